package model

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestPolicyInputsFollowServicesAndRoutes: a route or a Service annotation
// change wakes the policy watchers with the new inputs; an endpoint change
// or a route said again does not.
func TestPolicyInputsFollowServicesAndRoutes(t *testing.T) {
	m := New()
	w := m.Writer("test")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan PolicyInputs, 16)
	m.WatchPolicyInputs(ctx, func(in PolicyInputs) { got <- in })
	nextInputs := func() PolicyInputs {
		t.Helper()
		select {
		case in := <-got:
			return in
		case <-time.After(5 * time.Second):
			t.Fatal("no policy inputs received")
			return PolicyInputs{}
		}
	}
	quiet := func() {
		t.Helper()
		// Writes publish before they return, so a wake-up would be queued.
		select {
		case in := <-got:
			t.Fatalf("unexpected policy inputs, version %d", in.Version)
		case <-time.After(50 * time.Millisecond):
		}
	}
	first := nextInputs()
	if len(first.Services) != 0 || first.ClusterDomain != "cluster.local" {
		t.Fatalf("first inputs = %+v", first)
	}

	w.SetService(Service{Namespace: "demo", Name: "web", Annotations: map[string]string{"skein.io/retry-limit": "3"}})
	in := nextInputs()
	if len(in.Services) != 1 || in.Services[0].Annotations["skein.io/retry-limit"] != "3" {
		t.Fatalf("after SetService: %+v", in.Services)
	}
	route := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "split"}}
	w.SetHTTPRoute(route)
	if in = nextInputs(); len(in.HTTPRoutes) != 1 || in.HTTPRoutes[0] != route {
		t.Fatalf("after SetHTTPRoute: %+v", in.HTTPRoutes)
	}
	again := route.DeepCopy()
	again.ResourceVersion = "2"
	w.SetHTTPRoute(again)
	w.SetInstance(Instance{Namespace: "demo", Name: "web-0", IP: ip("10.0.0.1"), Ready: true})
	quiet()

	w.SetGRPCRoute(&gatewayv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "rpc"}})
	if in = nextInputs(); len(in.GRPCRoutes) != 1 {
		t.Fatalf("after SetGRPCRoute: %+v", in.GRPCRoutes)
	}
	w.Replace(Snapshot{Services: []Service{{Namespace: "demo", Name: "web"}}})
	in = nextInputs()
	if len(in.HTTPRoutes) != 0 || len(in.GRPCRoutes) != 0 || in.Services[0].Annotations != nil {
		t.Fatalf("after Replace: %+v", in)
	}
}
