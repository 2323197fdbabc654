package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Environment variables that choose where the binaries come from.
const (
	// BinDirEnv names a directory that already holds the binaries; it
	// overrides the cache that scripts/testcluster.sh builds into.
	BinDirEnv = "SKEIN_TESTCLUSTER_BIN"
	// BuildEnv, when set to anything but "" or "0", lets Start build the
	// binaries (about 10 minutes cold) instead of skipping the test.
	BuildEnv = "SKEIN_TESTCLUSTER_BUILD"
)

const buildScript = "scripts/testcluster.sh"

// requiredBinaries are what Start runs; kubectl is optional.
var requiredBinaries = []string{"etcd", "kube-apiserver", "kube-controller-manager"}

// binaryDir returns the directory holding the cluster's binaries, building
// them if BuildEnv allows it, and skips the test when they are not there.
func binaryDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv(BinDirEnv); dir != "" {
		if missing := missingBinaries(dir); len(missing) > 0 {
			t.Fatalf("%s=%s lacks %s", BinDirEnv, dir, strings.Join(missing, ", "))
		}
		return dir
	}
	script, err := findBuildScript()
	if err != nil {
		t.Fatalf("finding the test cluster's build script: %v", err)
	}
	dir, err := runBuildScript(script, "dir")
	if err != nil {
		t.Fatalf("asking %s for the binary directory: %v", buildScript, err)
	}
	missing := missingBinaries(dir)
	if len(missing) == 0 {
		return dir
	}
	if v := os.Getenv(BuildEnv); v == "" || v == "0" {
		t.Skipf("test cluster binaries (%s) not built in %s: run %s build, or set %s=1 to build them here (about 10 min cold)",
			strings.Join(missing, ", "), dir, buildScript, BuildEnv)
	}
	t.Logf("building the test cluster's binaries into %s (about 10 min cold)", dir)
	if dir, err = runBuildScript(script, "build"); err != nil {
		t.Fatalf("building the test cluster: %v", err)
	}
	if missing := missingBinaries(dir); len(missing) > 0 {
		t.Fatalf("%s build left %s without %s", buildScript, dir, strings.Join(missing, ", "))
	}
	return dir
}

func missingBinaries(dir string) []string {
	var missing []string
	for _, name := range requiredBinaries {
		if info, err := os.Stat(filepath.Join(dir, name)); err != nil || info.Mode()&0o111 == 0 {
			missing = append(missing, name)
		}
	}
	return missing
}

// findBuildScript walks up from the working directory (a package directory
// under `go test`) to the repository root that holds the script.
func findBuildScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		path := filepath.Join(dir, buildScript)
		if _, err := os.Stat(path); err == nil {
			return path, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no %s above the working directory", buildScript)
		}
		dir = parent
	}
}

// runBuildScript runs the script with one command and returns the directory
// it prints; the build's progress goes to the test binary's stderr.
func runBuildScript(script, command string) (string, error) {
	var stdout bytes.Buffer
	cmd := exec.Command(script, command)
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w", script, command, err)
	}
	dir := strings.TrimSpace(stdout.String())
	if dir == "" {
		return "", fmt.Errorf("%s %s printed no directory", script, command)
	}
	return dir, nil
}
