package model

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func httpRoute(name, resourceVersion string) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name, ResourceVersion: resourceVersion}}
}

func routeNames(r Routes) (names []string) {
	for _, h := range r.HTTP {
		names = append(names, "http:"+h.Name+"@"+h.ResourceVersion)
	}
	for _, g := range r.GRPC {
		names = append(names, "grpc:"+g.Name)
	}
	return names
}

// nextRoutes waits for the next call of a route watch.
func nextRoutes(t *testing.T, got <-chan Routes) Routes {
	t.Helper()
	select {
	case r := <-got:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no routes received")
		return Routes{}
	}
}

func TestRoutesAreWrittenWatchedAndReplaced(t *testing.T) {
	m := New()
	kube := m.Writer("kube")
	got := make(chan Routes, 16)
	m.WatchRoutes(t.Context(), func(r Routes) { got <- r })
	if r := nextRoutes(t, got); len(r.HTTP)+len(r.GRPC) != 0 {
		t.Fatalf("an empty model has routes %v", routeNames(r))
	}

	kube.SetHTTPRoute(httpRoute("web-b", "1"))
	kube.SetHTTPRoute(httpRoute("web-a", "2"))
	kube.SetGRPCRoute(&gatewayv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "greeter"}})
	var r Routes
	for len(r.HTTP)+len(r.GRPC) < 3 {
		r = nextRoutes(t, got)
	}
	if names := routeNames(r); len(names) != 3 || names[0] != "http:web-a@2" || names[1] != "http:web-b@1" || names[2] != "grpc:greeter" {
		t.Fatalf("routes = %v, want web-a, web-b (sorted), greeter", names)
	}

	// An informer's resync says the same object again: no change.
	version := m.Routes().Version
	kube.SetHTTPRoute(httpRoute("web-a", "2"))
	if v := m.Routes().Version; v != version {
		t.Errorf("resync of an unchanged route moved the version %d -> %d", version, v)
	}
	kube.SetHTTPRoute(httpRoute("web-a", "3"))
	kube.DeleteGRPCRoute("demo", "greeter")
	kube.DeleteHTTPRoute("demo", "unknown")
	for r = nextRoutes(t, got); len(r.GRPC) != 0; r = nextRoutes(t, got) {
	}
	if names := routeNames(m.Routes()); len(names) != 2 || names[0] != "http:web-a@3" {
		t.Errorf("after an update and a delete: %v", names)
	}

	// Another source's Replace leaves kube's routes alone; its own Replace
	// drops what it no longer has.
	files := m.Writer("files")
	files.Replace(Snapshot{HTTPRoutes: []*gatewayv1.HTTPRoute{httpRoute("from-files", "")}})
	if names := routeNames(m.Routes()); len(names) != 3 {
		t.Errorf("after files' Replace: %v", names)
	}
	files.Replace(Snapshot{})
	if names := routeNames(m.Routes()); len(names) != 2 {
		t.Errorf("after files' empty Replace: %v", names)
	}

	// A Service's annotations are policy too: their change wakes the
	// watch, and the Service can be read.
	for len(got) > 0 {
		<-got
	}
	svc := webService
	svc.Annotations = map[string]string{"skein.io/timeout-request": "2s"}
	kube.SetService(svc)
	nextRoutes(t, got)
	if s, ok := m.Service("demo", "web"); !ok || s.Annotations["skein.io/timeout-request"] != "2s" {
		t.Errorf("Service(demo, web) = %+v, %v", s, ok)
	}
	if _, ok := m.Service("demo", "nope"); ok {
		t.Error("an unknown service is found")
	}
}
