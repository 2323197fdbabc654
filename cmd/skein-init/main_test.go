package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/skeinmesh/skein/internal/testenv"
)

func TestFlagErrorsNameTheFlag(t *testing.T) {
	tests := []struct {
		args []string
		flag string
	}{
		{[]string{"--skip-inbound-ports=80,x"}, "--skip-inbound-ports"},
		{[]string{"--skip-outbound-ports=9-1"}, "--skip-outbound-ports"},
		{[]string{"--skip-outbound-cidrs=10.0.0.0/99"}, "--skip-outbound-cidrs"},
		{[]string{"--mode=ebpf"}, "--mode"},
		{[]string{"--inbound-port=4140"}, "--inbound-port"},
		{[]string{"--proxy-uid=0"}, "--proxy-uid"},
		{[]string{"--outbound-port=x"}, "-outbound-port"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code == 0 {
				t.Fatalf("exit code 0, want failure")
			}
			if !strings.Contains(stderr.String(), tt.flag) {
				t.Errorf("error output does not name %s:\n%s", tt.flag, stderr.String())
			}
		})
	}
}

func TestDryRunPrintsScriptWithoutChangingAnything(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"--dry-run", "--mode=tproxy", "--skip-inbound-ports=4190,5000-5010", "--ipv6=false"}
	if os.Geteuid() == 0 {
		// As root, read the rules of a namespace that cannot exist rather
		// than this machine's: the dry run then falls back to the
		// empty-namespace script without ever looking at the host.
		args = append(args, "--netns=skein-init-test-missing")
	}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, stderr.String())
	}
	for _, want := range []string{
		"ip -4 rule add fwmark 0x539 lookup 133",
		"-A SKEIN_INBOUND -p tcp --dport 5000:5010 -j RETURN",
		"TPROXY --on-port 4143",
		"-A SKEIN_OUTBOUND -p tcp -j REDIRECT --to-ports 4140",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestApplyThenCleanupInANamespace(t *testing.T) {
	n := testenv.NewNetwork(t)
	h := testenv.AddHost(t, n, "workload")
	saveHas := func(want string) bool {
		out, err := h.Command(t.Context(), "iptables-save", "-t", "nat").CombinedOutput()
		if err != nil {
			t.Fatalf("iptables-save: %v: %s", err, out)
		}
		return strings.Contains(string(out), want)
	}
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"--netns=" + h.Namespace, "--skip-outbound-ports=3306"}, &stdout, &stderr); code != 0 {
		t.Fatalf("apply: exit code %d:\n%s", code, stderr.String())
	}
	if !saveHas("-A SKEIN_OUTBOUND -p tcp -m tcp --dport 3306 -j RETURN") {
		t.Fatalf("rules missing after apply; log:\n%s", stderr.String())
	}
	if code := run(t.Context(), []string{"--netns=" + h.Namespace, "--cleanup"}, &stdout, &stderr); code != 0 {
		t.Fatalf("cleanup: exit code %d:\n%s", code, stderr.String())
	}
	if saveHas("SKEIN_") {
		t.Errorf("rules left after --cleanup")
	}
}
