package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/internal/install"
)

func runSkein(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("skein %s: %v", strings.Join(args, " "), err)
	}
	return out.Bytes()
}

// --print-values gives Helm the values skein install renders: the flags'
// values and the trust of --identity-dir, which the chart renders into the
// issuer Secret and the trust-anchors ConfigMap.
func TestPrintValuesAreWhatInstallRenders(t *testing.T) {
	dir := t.TempDir()
	runSkein(t, "identity", "generate", "--out", dir)
	anchor, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	flags := []string{"--namespace", "mesh", "--replicas", "2", "--controller-log-level", "debug", "--identity-dir", dir, "--grafana-dashboards"}
	var values map[string]any
	if err := yaml.Unmarshal(runSkein(t, append([]string{"install", "--print-values"}, flags...)...), &values); err != nil {
		t.Fatal(err)
	}
	controller := values["controller"].(map[string]any)
	if controller["replicas"] != float64(2) || controller["logLevel"] != "debug" || values["grafana"].(map[string]any)["dashboards"] != true {
		t.Errorf("values %v do not carry the flags", values)
	}
	if got := values["identity"].(map[string]any)["trustAnchorsPEM"]; got != string(anchor) {
		t.Errorf("identity.trustAnchorsPEM = %q, want --identity-dir's ca.crt", got)
	}
	manifests, err := install.RenderChart("mesh", values)
	if err != nil {
		t.Fatalf("the chart refuses --print-values' values: %v", err)
	}
	installed := runSkein(t, append([]string{"install"}, flags...)...)
	for _, want := range []string{"name: skein-grafana-dashboards", "replicas: 2", "- debug"} {
		if !bytes.Contains(manifests, []byte(want)) || !bytes.Contains(installed, []byte(want)) {
			t.Errorf("%q missing from helm's or skein install's rendering", want)
		}
	}
}
