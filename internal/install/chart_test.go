package install_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/internal/install"
)

// The chart's values.schema.json refuses a bad value by the field's name,
// through the library as through the Helm CLI (scripts/helm.sh check).
func TestChartSchemaRefusesBadValuesByName(t *testing.T) {
	good, err := install.Prepare(install.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		field string
		set   func(v map[string]any)
	}{
		{"logLevel", func(v map[string]any) { v["controller"].(map[string]any)["logLevel"] = "loud" }},
		{"replicas", func(v map[string]any) { v["controller"].(map[string]any)["replicas"] = int64(0) }},
		{"imagePullPolicy", func(v map[string]any) { v["imagePullPolicy"] = "Sometimes" }},
		{"defaultInboundPolicy", func(v map[string]any) { v["defaultInboundPolicy"] = "allow-everyone" }},
		{"prometheusURL", func(v map[string]any) { v["prometheusURL"] = "prometheus:9090" }},
		{"mode", func(v map[string]any) { v["identity"].(map[string]any)["mode"] = "vault" }},
		{"replicaCount", func(v map[string]any) { v["replicaCount"] = 3 }}, // not a value of the chart
	} {
		values := install.Values(good)
		tc.set(values)
		_, err := install.RenderChart("skein", values)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v, want one naming it", tc.field, err)
		}
	}
}

// The chart makes no trust of its own: a value left out is refused by name,
// with where to get it.
func TestChartRequiresTheTrustMaterial(t *testing.T) {
	good, err := install.Prepare(install.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range [][]string{
		{"identity", "trustAnchorsPEM"}, {"identity", "issuer", "certPEM"}, {"identity", "issuer", "keyPEM"},
		{"joinToken", "keyPEM"}, {"joinToken", "publicKeyPEM"},
		{"webhook", "certPEM"}, {"webhook", "keyPEM"}, {"webhook", "caPEM"},
	} {
		values := install.Values(good)
		m := values
		for _, k := range path[:len(path)-1] {
			m = m[k].(map[string]any)
		}
		m[path[len(path)-1]] = ""
		name := strings.Join(path, ".")
		_, err := install.RenderChart("skein", values)
		if err == nil || !strings.Contains(err.Error(), name+" is required") || !strings.Contains(err.Error(), "--print-values") {
			t.Errorf("without %s: err = %v, want it named as required", name, err)
		}
	}
	values := install.Values(good)
	values["identity"].(map[string]any)["mode"] = "external"
	if _, err := install.RenderChart("skein", values); err == nil || !strings.Contains(err.Error(), "identity.issuer") {
		t.Errorf("an external issuer given the issuer's key: err = %v, want one naming identity.issuer", err)
	}
}

// skein install's output is `helm template` of the same chart with the
// same values (the trust material given to both), object for object and
// in the same order, with every option: the Helm CLI, pinned
// (scripts/helm.sh), renders charts/skein from the source tree.
func TestInstallIsHelmTemplateOfTheChart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the pinned Helm CLI when not cached")
	}
	helm := helmCLI(t)
	anchor := install.Config{}
	prepared, err := install.Prepare(anchor)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]install.Config{
		"defaults": {},
		"every option": {
			Namespace: "mesh", ControllerImage: "registry.example/c:1", ProxyImage: "registry.example/p:1",
			ImagePullPolicy: "Never", TrustDomain: "cluster.local", Replicas: 3, LogLevel: "debug",
			DefaultInboundPolicy: "deny", PrometheusURL: "http://prometheus.monitoring:9090",
			GatewayAPICRDs: true, GrafanaDashboards: true,
		},
		"external identity": {
			IdentityMode: install.IdentityExternal,
			Identity:     install.IdentityMaterial{TrustAnchorPEM: prepared.Identity.TrustAnchorPEM},
		},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := install.Prepare(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ours, err := install.Render(cfg)
			if err != nil {
				t.Fatal(err)
			}
			values, err := yaml.Marshal(install.Values(cfg))
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(file, values, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(helm, "template", install.ReleaseName, filepath.Join("..", "..", "charts", "skein"),
				"-n", cfg.Namespace, "--include-crds", "-f", file, "--set", "namespace.create=true")
			theirs, err := cmd.Output()
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, stderrOf(err))
			}
			a, b := parse(t, ours), parse(t, theirs)
			if !reflect.DeepEqual(kindNames(a), kindNames(b)) {
				t.Fatalf("skein install renders\n%v\nhelm template\n%v", kindNames(a), kindNames(b))
			}
			for i := range a {
				if !reflect.DeepEqual(a[i].Object, b[i].Object) {
					t.Errorf("%s differs from helm template's", kindNames(a)[i])
				}
			}
		})
	}
}

// helmCLI is the pinned Helm CLI, installed by scripts/helm.sh if needed.
func helmCLI(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join("..", "..", "scripts", "helm.sh"), "path").Output()
	if err != nil {
		t.Fatalf("scripts/helm.sh path: %v\n%s", err, stderrOf(err))
	}
	return strings.TrimSpace(string(out))
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
