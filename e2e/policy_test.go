package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/proxy/policyclient"
	"github.com/skeinmesh/skein/internal/routes"
)

// The real controller, reading its manifest directory, serves an HTTPRoute
// to a mesh client as the policy of the Service port it attaches to; a
// broken edit (an unknown backend) is refused naming the file, object and
// field, and the last good route keeps serving; the fixed edit then
// replaces it.
func TestControllerServesRoutesAndKeepsTheLastGood(t *testing.T) {
	cp := getControlPlane(t)
	ctlID := spiffeid.RequireFromString(controllerID)
	routesFile := filepath.Join(cp.manifests, "routes.yaml")
	t.Cleanup(func() { os.Remove(routesFile) })
	write := func(backends string) {
		t.Helper()
		doc := fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: split
  namespace: %s
  annotations: {skein.io/timeout-request: 2s}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: %d}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [%s]
`, echoNamespace, cpPortHTTP, backends)
		tmp := filepath.Join(cp.dir, "routes.yaml.tmp")
		if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, routesFile); err != nil {
			t.Fatal(err)
		}
	}

	local := cp.certifyFrom(t, cp.plain, "spiffe://cluster.local/ns/test/sa/policy-probe")
	conn := cp.dialController(t, cp.plain, local.ClientTLS(ctlID, []string{"h2"}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := policyclient.New(ctx, conn, policyclient.Options{Log: slog.New(slog.DiscardHandler), WaitFirst: 10 * time.Second})
	target := fmt.Sprintf("%s:%d", cp.vip, cpPortHTTP)
	weight := func(p *routes.Policy) int {
		if p == nil || len(p.Routes) != 1 || len(p.Routes[0].Rules) != 1 || len(p.Routes[0].Rules[0].Backends) == 0 {
			return -1
		}
		return int(p.Routes[0].Rules[0].Backends[0].Weight)
	}
	waitWeight := func(want int) *routes.Policy {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			p, err := client.Policy(ctx, target)
			if err == nil && weight(p) == want {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("policy of %s: %+v, %v; want the route with weight %d", target, p, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	write(fmt.Sprintf("{name: echo, port: %d, weight: 7}", cpPortHTTP))
	p := waitWeight(7)
	r := p.Routes[0]
	if r.RouteName() != echoNamespace+"/split" || r.Rules[0].Timeouts.Request != 2*time.Second ||
		r.Rules[0].Backends[0].Authority != fmt.Sprintf("echo.%s.svc.cluster.local:%d", echoNamespace, cpPortHTTP) {
		t.Errorf("route = %+v", r)
	}

	logText := func() string { b, _ := os.ReadFile(cp.controller.log); return string(b) }
	refusals := strings.Count(logText(), "manifests invalid")
	write(fmt.Sprintf("{name: echo, port: %d, weight: 1}, {name: nope, port: %d}", cpPortHTTP, cpPortHTTP))
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(logText(), "manifests invalid") == refusals {
		if time.Now().After(deadline) {
			t.Fatalf("the controller did not refuse the broken route:\n%s", cp.controller.tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	last := logText()[strings.LastIndex(logText(), "manifests invalid"):]
	last, _, _ = strings.Cut(last, "\n")
	for _, want := range []string{"routes.yaml", "HTTPRoute test/split", "spec.rules[0].backendRefs[1]", "Service test/nope not found"} {
		if !strings.Contains(last, want) {
			t.Errorf("refusal %q does not name %q", last, want)
		}
	}
	if p, err := client.Policy(ctx, target); err != nil || weight(p) != 7 {
		t.Errorf("after the broken edit: %+v, %v; want the last good route (weight 7)", p, err)
	}

	write(fmt.Sprintf("{name: echo, port: %d, weight: 9}", cpPortHTTP))
	waitWeight(9)
}
