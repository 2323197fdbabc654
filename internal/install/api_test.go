package install_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/skeinmesh/skein/internal/install"
)

// The controller's API (tap, authz, trust, the dashboard; golden metrics
// when a Prometheus is given) is served on the pod's loopback only.
func TestControllerServesItsAPIOnLoopbackOnly(t *testing.T) {
	args := func(cfg install.Config) string {
		t.Helper()
		out, err := install.Render(cfg)
		if err != nil {
			t.Fatal(err)
		}
		deploy := find(t, parse(t, out), "Deployment", "skein-controller")
		containers, _, _ := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
		a, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
		return " " + strings.Join(a, " ") + " "
	}
	if got := args(install.Config{}); !strings.Contains(got, " -api-addr 127.0.0.1:8085 ") || strings.Contains(got, "-prometheus-url") {
		t.Errorf("without a Prometheus the controller is given %q, want its API on 127.0.0.1:8085 and no -prometheus-url", got)
	}
	got := args(install.Config{PrometheusURL: "http://prometheus.monitoring:9090"})
	if !strings.Contains(got, " -api-addr 127.0.0.1:8085 -prometheus-url http://prometheus.monitoring:9090 ") {
		t.Errorf("with a Prometheus the controller is given %q, want its API on 127.0.0.1:8085", got)
	}
	for _, bad := range []string{"prometheus:9090", "ftp://p", "http://"} {
		if _, err := install.Render(install.Config{PrometheusURL: bad}); err == nil || !strings.Contains(err.Error(), "prometheus-url:") {
			t.Errorf("PrometheusURL %q: err = %v, want one naming prometheus-url", bad, err)
		}
	}
}
