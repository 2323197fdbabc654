package config

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGatewayAPICRDsAreTheModules: the embedded Gateway API CRDs are the
// ones of the gateway-api version go.mod requires, byte for byte, so the
// CRDs `skein install --gateway-api-crds` renders match the types the
// controller decodes routes with.
func TestGatewayAPICRDsAreTheModules(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Skipf("cannot find the gateway-api module: %v", err)
	}
	moduleDir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	entries, err := fs.ReadDir(crdFiles, GatewayAPIDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("%d files in %s, want the HTTPRoute and GRPCRoute CRDs", len(entries), GatewayAPIDir)
	}
	for _, e := range entries {
		ours, err := fs.ReadFile(crdFiles, GatewayAPIDir+"/"+e.Name())
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := os.ReadFile(filepath.Join(moduleDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours, theirs) {
			t.Errorf("charts/skein/%s/%s differs from the module's %s: run make gateway-api-crds", GatewayAPIDir, e.Name(), moduleDir)
		}
	}
	files, err := GatewayAPICRDs()
	if err != nil || len(files) != len(entries) {
		t.Fatalf("GatewayAPICRDs() = %d files, %v", len(files), err)
	}
}
