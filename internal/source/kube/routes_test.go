package kube

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/skeinmesh/skein/internal/model"
)

func webRoute(weight int32) *gatewayv1.HTTPRoute {
	port := gatewayv1.PortNumber(80)
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-split", Annotations: map[string]string{"skein.io/retry-http": "5xx"}},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Group: new(gatewayv1.Group), Kind: new(gatewayv1.Kind("Service")), Name: "web", Port: &port}}},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{
				BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web-v2", Port: &port}, Weight: &weight,
			}}}}},
		},
	}
}

func greeterRoute() *gatewayv1.GRPCRoute {
	return &gatewayv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "greeter"}}
}

// startWithRoutes runs a source that reads routes from a fake cluster
// where served says, at each discovery request, whether HTTPRoute and
// GRPCRoute are served; logs get what it logs.
func startWithRoutes(t *testing.T, served *atomic.Bool, logs slog.Handler, routes ...runtime.Object) (*gatewayfake.Clientset, *model.Model, *atomic.Int64) {
	t.Helper()
	client := fake.NewClientset(webService())
	client.Resources = []*metav1.APIResourceList{{
		GroupVersion: HTTPRoutesResource.GroupVersion().String(),
		APIResources: []metav1.APIResource{{Name: "httproutes", Namespaced: true, Kind: "HTTPRoute"}, {Name: "grpcroutes", Namespaced: true, Kind: "GRPCRoute"}},
	}}
	var lookups atomic.Int64
	client.Discovery().(*fakediscovery.FakeDiscovery).PrependReactor("get", "resource", func(k8stesting.Action) (bool, runtime.Object, error) {
		lookups.Add(1)
		if served.Load() {
			return false, nil, nil
		}
		return true, nil, apierrors.NewNotFound(HTTPRoutesResource.GroupResource(), "")
	})
	gw := gatewayfake.NewClientset(routes...)
	m := model.New()
	s := New(client, m, slog.New(logs), WithGatewayAPI(gw))
	s.optionalRetry = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("informers did not sync")
	}
	return gw, m, &lookups
}

// waitForRoutes polls the model until ok holds; the deadline only keeps a
// broken test from hanging.
func waitForRoutes(t *testing.T, m *model.Model, what string, ok func(model.PolicyInputs) bool) model.PolicyInputs {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := m.PolicyInputs()
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw %s; routes %d HTTP, %d gRPC", what, len(r.HTTPRoutes), len(r.GRPCRoutes))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRoutesReachTheModel(t *testing.T) {
	var served atomic.Bool
	served.Store(true)
	gw, m, _ := startWithRoutes(t, &served, slog.DiscardHandler, webRoute(10), greeterRoute())
	// The routes listed at start are in before Synced.
	r := m.PolicyInputs()
	if len(r.HTTPRoutes) != 1 || len(r.GRPCRoutes) != 1 {
		t.Fatalf("after sync: %d HTTPRoutes, %d GRPCRoutes, want 1 and 1", len(r.HTTPRoutes), len(r.GRPCRoutes))
	}
	if got := r.HTTPRoutes[0].Annotations["skein.io/retry-http"]; got != "5xx" {
		t.Errorf("the route's annotation = %q", got)
	}

	routes := gw.GatewayV1().HTTPRoutes("demo")
	if _, err := routes.Update(t.Context(), webRoute(90), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForRoutes(t, m, "the new weight", func(r model.PolicyInputs) bool {
		return len(r.HTTPRoutes) == 1 && *r.HTTPRoutes[0].Spec.Rules[0].BackendRefs[0].Weight == 90
	})
	if err := routes.Delete(t.Context(), "web-split", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := gw.GatewayV1().GRPCRoutes("demo").Delete(t.Context(), "greeter", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForRoutes(t, m, "no routes", func(r model.PolicyInputs) bool { return len(r.HTTPRoutes)+len(r.GRPCRoutes) == 0 })
}

// TestRoutesServedLater: without the Gateway API CRDs the source syncs
// and serves endpoints, says so once, and reads the routes when the CRDs
// come, without a restart.
func TestRoutesServedLater(t *testing.T) {
	var served atomic.Bool
	logs := &recordedLogs{}
	_, m, lookups := startWithRoutes(t, &served, logs, webRoute(10))
	if r := m.PolicyInputs(); len(r.HTTPRoutes) != 0 {
		t.Fatalf("routes read while not served: %d", len(r.HTTPRoutes))
	}
	nextMatching(t, watch(t, m, "web.demo.svc.cluster.local:80"), "the service", func(s model.EndpointSet) bool { return s.Exists })
	deadline := time.Now().Add(5 * time.Second)
	for lookups.Load() < 6 && time.Now().Before(deadline) { // each kind looked for again, twice
		time.Sleep(time.Millisecond)
	}
	if n := logs.count("not reading HTTPRoutes yet"); n != 1 {
		t.Errorf("logged %d times that HTTPRoutes are not served, want once:\n%s", n, logs.text())
	}
	served.Store(true)
	waitForRoutes(t, m, "the route once served", func(r model.PolicyInputs) bool { return len(r.HTTPRoutes) == 1 })
}

// recordedLogs is a slog handler that keeps the messages.
type recordedLogs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *recordedLogs) Enabled(context.Context, slog.Level) bool { return true }
func (l *recordedLogs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *recordedLogs) WithGroup(string) slog.Handler            { return l }
func (l *recordedLogs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

func (l *recordedLogs) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(slices.DeleteFunc(slices.Clone(l.msgs), func(m string) bool { return !strings.HasPrefix(m, prefix) }))
}

func (l *recordedLogs) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.msgs, "\n")
}
