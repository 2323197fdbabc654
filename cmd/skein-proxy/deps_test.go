package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The proxy runs beside every workload and must stay lean: it never links
// the Kubernetes client libraries (DESIGN.md).
func TestProxyDoesNotImportKubernetesLibraries(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "k8s.io/") {
			t.Errorf("skein-proxy depends on %s", pkg)
		}
	}
}
