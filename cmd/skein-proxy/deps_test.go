package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/skeinmesh/skein/internal/release"
)

// deps lists the packages skein-proxy links when built as Skein builds it.
func deps(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-tags", release.Tags, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	return strings.Fields(string(out))
}

// The proxy runs beside every workload and must stay lean: it never links
// the Kubernetes client libraries (DESIGN.md).
func TestProxyDoesNotImportKubernetesLibraries(t *testing.T) {
	for _, pkg := range deps(t) {
		if strings.HasPrefix(pkg, "k8s.io/") {
			t.Errorf("skein-proxy depends on %s", pkg)
		}
	}
}

// A package that calls methods by name through reflection (the templates
// do) makes the linker keep every exported method of every linked type:
// 3.4 MB more binary and about 2.3 MB more resident memory per proxy
// (internal/release).
func TestProxyKeepsDeadCodeElimination(t *testing.T) {
	for _, pkg := range deps(t) {
		switch pkg {
		case "text/template", "html/template", "golang.org/x/net/trace":
			t.Errorf("skein-proxy depends on %s, which calls methods by name and so keeps every exported method in the binary", pkg)
		}
	}
}
