package fips

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// TestModeFollowsGODEBUG runs this test binary again under each fips140
// setting (fixed at start, so it takes a new process) and reads Mode.
func TestModeFollowsGODEBUG(t *testing.T) {
	if os.Getenv("SKEIN_FIPS_TEST_PRINT_MODE") == "1" {
		fmt.Print(Mode())
		os.Exit(0)
	}
	for _, c := range []struct{ godebug, want string }{
		{"fips140=off", "off"}, {"fips140=on", "on"}, {"fips140=only", "only"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestModeFollowsGODEBUG$")
		cmd.Env = append(os.Environ(), "GODEBUG="+c.godebug, "SKEIN_FIPS_TEST_PRINT_MODE=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("GODEBUG=%s: %v", c.godebug, err)
		}
		if string(out) != c.want {
			t.Errorf("GODEBUG=%s: Mode() = %q, want %q", c.godebug, out, c.want)
		}
	}
}
