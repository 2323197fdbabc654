package kube

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/skeinmesh/skein/config"
	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/testenv"
	"github.com/skeinmesh/skein/internal/testenv/cluster"
)

// TestRoutesFromTheAPIServer runs the source against a real API server
// (internal/testenv/cluster): started before the Gateway API CRDs exist,
// it serves the Service's endpoints and says once that routes are not
// read; once the test applies the embedded CRDs with kubectl it reads the
// routes kubectl creates, changes and deletes, without a restart.
func TestRoutesFromTheAPIServer(t *testing.T) {
	c := cluster.Start(t, testenv.NewNetwork(t))
	client := kubernetes.NewForConfigOrDie(c.Config)
	gw := gatewayclient.NewForConfigOrDie(c.Config)
	kubectl(t, c, `
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
  annotations: {skein.io/timeout-request: 2s, example.com/unrelated: x}
spec:
  ports: [{name: http, port: 80}]
  selector: {app: web}
`, "apply", "-f", "-")

	logs := &recordedLogs{}
	m := model.New()
	s := New(client, m, slog.New(logs), WithGatewayAPI(gw))
	s.optionalRetry = 200 * time.Millisecond
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("informers did not sync without the Gateway API CRDs")
	}
	set := nextMatching(t, watch(t, m, "web.demo.svc.cluster.local:80"), "the service", func(s model.EndpointSet) bool { return s.Exists })
	if set.Service != "demo/web" {
		t.Errorf("destination's service = %q", set.Service)
	}
	if n := logs.count("not reading HTTPRoutes yet"); n != 1 {
		t.Errorf("logged %d times that HTTPRoutes are not served, want once:\n%s", n, logs.text())
	}

	files, err := config.GatewayAPICRDs()
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, c, string(bytes.Join(files, []byte("\n---\n"))), "apply", "--server-side", "-f", "-")
	kubectl(t, c, "", "wait", "--for=condition=Established", "--timeout=60s",
		"crd/httproutes.gateway.networking.k8s.io", "crd/grpcroutes.gateway.networking.k8s.io")
	waitUntil(t, 30*time.Second, "the source to read HTTPRoutes", func() error {
		if logs.count("reading HTTPRoutes: the cluster serves them now") != 1 {
			return fmt.Errorf("logs:\n%s", logs.text())
		}
		return nil
	})
	if n := logs.count("not reading HTTPRoutes yet"); n != 1 {
		t.Errorf("logged %d times that HTTPRoutes are not served, want once:\n%s", n, logs.text())
	}

	route := func(weight int) string {
		return fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web-split
  namespace: demo
  annotations: {skein.io/retry-http: 5xx}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs:
    - {name: web, port: 80, weight: %d}
`, weight)
	}
	weightIs := func(want int32) func(model.PolicyInputs) bool {
		return func(r model.PolicyInputs) bool {
			return len(r.HTTPRoutes) == 1 && r.HTTPRoutes[0].Name == "web-split" && *r.HTTPRoutes[0].Spec.Rules[0].BackendRefs[0].Weight == want
		}
	}
	kubectl(t, c, route(10), "apply", "-f", "-")
	got := waitForRoutes(t, m, "the HTTPRoute kubectl created", weightIs(10))
	if a := got.HTTPRoutes[0].Annotations["skein.io/retry-http"]; a != "5xx" {
		t.Errorf("the route's annotation = %q", a)
	}
	if len(got.HTTPRoutes[0].ManagedFields) > 0 {
		t.Error("the model keeps the route's managedFields")
	}
	kubectl(t, c, route(90), "apply", "-f", "-")
	waitForRoutes(t, m, "the HTTPRoute kubectl changed", weightIs(90))

	kubectl(t, c, `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: greeter, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{method: {service: hello.Greeter}}]
    backendRefs: [{name: web, port: 80}]
`, "apply", "-f", "-")
	waitForRoutes(t, m, "the GRPCRoute kubectl created", func(r model.PolicyInputs) bool {
		return len(r.GRPCRoutes) == 1 && *r.GRPCRoutes[0].Spec.Rules[0].Matches[0].Method.Service == "hello.Greeter"
	})

	kubectl(t, c, "", "-n", "demo", "delete", "httproute/web-split", "grpcroute/greeter")
	waitForRoutes(t, m, "no routes after kubectl delete", func(r model.PolicyInputs) bool { return len(r.HTTPRoutes)+len(r.GRPCRoutes) == 0 })

	// The Service's annotations reach the model, the mesh's only.
	var web *model.Service
	for _, svc := range m.PolicyInputs().Services {
		if svc.Namespace == "demo" && svc.Name == "web" {
			web = svc
		}
	}
	if web == nil || !maps.Equal(web.Annotations, map[string]string{"skein.io/timeout-request": "2s"}) {
		t.Errorf("the model's demo/web: %+v", web)
	}
}

func kubectl(t *testing.T, c *cluster.Cluster, stdin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := c.Kubectl(ctx, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %v for %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
