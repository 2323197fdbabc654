package mirror

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skeinmesh/skein/internal/routes"
)

func TestKnownMakesEveryResultSeriesOfAMirrorExistAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(context.Background(), Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	m.Known(&routes.Policy{Service: "demo/web", Routes: []routes.Route{{
		Kind: "HTTPRoute", Namespace: "demo", Name: "web-mirror",
		Rules: []routes.Rule{{}, {Mirrors: []routes.Mirror{{Backend: routes.Backend{Authority: "shadow.demo.svc.cluster.local:8080"}, Percent: 100}}}},
	}}})
	m.Known(nil)
	want := `
# HELP mirror_total Mirrored requests by how the mirror's answer compared with the primary's.
# TYPE mirror_total counter
`
	for _, r := range []string{"dropped", "error", "match", "mismatch", "skipped"} {
		want += `mirror_total{backend="shadow.demo.svc.cluster.local:8080",dst_namespace="demo",dst_service="web",result="` + r + `",route_name="demo/web-mirror"} 0
`
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "mirror_total"); err != nil {
		t.Error(err)
	}
}
