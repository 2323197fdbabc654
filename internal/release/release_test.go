package release

import (
	"os/exec"
	"strings"
	"testing"
)

// TestMakefileBuildsAsRelease: `make build` and `make build-fips` build
// with Env and Tags, as skein-bench and the end-to-end tests do, so the
// binaries measured and tested are the ones shipped.
func TestMakefileBuildsAsRelease(t *testing.T) {
	out, err := exec.Command("make", "-n", "-C", "../..", "build", "build-fips").Output()
	if err != nil {
		t.Fatalf("make -n build build-fips: %v", err)
	}
	var builds int
	for line := range strings.Lines(string(out)) {
		if !strings.Contains(line, " build ") {
			continue
		}
		builds++
		for _, want := range append([]string{"-tags '" + Tags + "'"}, Env...) {
			if !strings.Contains(line, want) {
				t.Errorf("the Makefile builds without %s: %s", want, strings.TrimSpace(line))
			}
		}
	}
	if builds != 2 {
		t.Errorf("make -n printed %d go builds, want 2 (build, build-fips):\n%s", builds, out)
	}
}
