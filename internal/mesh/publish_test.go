package mesh

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/skeinmesh/skein/internal/netns"
	"github.com/skeinmesh/skein/internal/source/files"
)

// TestControllerManifestsCarryRoutes: the routes of skein up's manifests
// reach the controller's directory as they were written, and that
// directory loads (the controller would refuse it otherwise).
func TestControllerManifestsCarryRoutes(t *testing.T) {
	src := t.TempDir()
	manifest := `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v2, namespace: shop}
spec: {selector: {app: web-v2}, ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split, namespace: shop, annotations: {skein.io/retry-http: 5xx}}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules: [{backendRefs: [{name: web, port: 80, weight: 90}, {name: web-v2, port: 80, weight: 10}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules: [{matches: [{method: {service: a.B}}], backendRefs: [{name: web-v2, port: 80}]}]
`
	if err := os.WriteFile(filepath.Join(src, "shop.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := readPlan(src)
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	if err := os.Mkdir(filepath.Join(state, controllerDir), 0o755); err != nil {
		t.Fatal(err)
	}
	m := &Mesh{plan: p, vips: map[string]netip.Addr{
		"shop/web": netip.MustParseAddr("10.96.0.1"), "shop/web-v2": netip.MustParseAddr("10.96.0.2"),
	}}
	m.cfg.StateDir = state
	if err := m.writeControllerManifests(); err != nil {
		t.Fatal(err)
	}
	snap, _, err := files.Load(filepath.Join(state, controllerDir))
	if err != nil {
		t.Fatalf("the controller's directory does not load: %v", err)
	}
	if len(snap.HTTPRoutes) != 1 || len(snap.GRPCRoutes) != 1 {
		t.Fatalf("controller gets %d HTTPRoutes, %d GRPCRoutes; want 1, 1", len(snap.HTTPRoutes), len(snap.GRPCRoutes))
	}
	if r := snap.HTTPRoutes[0]; *r.Spec.Rules[0].BackendRefs[1].Weight != 10 || r.Annotations["skein.io/retry-http"] != "5xx" {
		t.Errorf("HTTPRoute = %+v", r)
	}
}

// TestControllerManifestsCarryAuthorizationPolicy: Namespaces (with their
// default-policy annotation) and the policy.skein.io objects of skein up's
// manifests reach the controller's directory, which loads.
func TestControllerManifestsCarryAuthorizationPolicy(t *testing.T) {
	src := t.TempDir()
	manifest := `
apiVersion: v1
kind: Namespace
metadata: {name: shop, annotations: {skein.io/default-inbound-policy: all-authenticated}}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {command: [web], ports: [{name: http, containerPort: 8080}]}
---
apiVersion: policy.skein.io/v1alpha1
kind: Server
metadata: {name: web-http, namespace: shop}
spec: {podSelector: {matchLabels: {app: web}}, port: http}
---
apiVersion: policy.skein.io/v1alpha1
kind: NetworkAuthentication
metadata: {name: lan, namespace: shop}
spec: {networks: [{cidr: 198.18.0.0/16}]}
---
apiVersion: policy.skein.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: lan, namespace: shop}
spec:
  targetRef: {group: policy.skein.io, kind: Server, name: web-http}
  requiredAuthenticationRefs: [{group: policy.skein.io, kind: NetworkAuthentication, name: lan}]
`
	if err := os.WriteFile(filepath.Join(src, "shop.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := readPlan(src)
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	if err := os.Mkdir(filepath.Join(state, controllerDir), 0o755); err != nil {
		t.Fatal(err)
	}
	m := &Mesh{plan: p, vips: map[string]netip.Addr{}}
	m.cfg.StateDir = state
	if err := m.writeControllerManifests(); err != nil {
		t.Fatal(err)
	}
	snap, _, err := files.Load(filepath.Join(state, controllerDir))
	if err != nil {
		t.Fatalf("the controller's directory does not load: %v", err)
	}
	if len(snap.Servers) != 1 || len(snap.NetworkAuthentications) != 1 || len(snap.AuthorizationPolicies) != 1 ||
		len(snap.Namespaces) != 1 || snap.Namespaces[0].Annotations["skein.io/default-inbound-policy"] != "all-authenticated" {
		t.Fatalf("controller gets %+v", snap)
	}
}

// TestControllerManifestsListUnreadyReplicas: every running replica
// reaches the controller, in replica order, the unready ones marked, so
// that an unready replica's proxy still gets the inbound policy its
// readiness probe must pass, and takes no traffic.
func TestControllerManifestsListUnreadyReplicas(t *testing.T) {
	src := t.TempDir()
	manifest := `
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop}
spec: {replicas: 2, command: [testapp]}
`
	if err := os.WriteFile(filepath.Join(src, "shop.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := readPlan(src)
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	if err := os.Mkdir(filepath.Join(state, controllerDir), 0o755); err != nil {
		t.Fatal(err)
	}
	w := p.workloads[0]
	ready, unready := &instance{name: "web-0", index: 0, host: &netns.Host{IP: netip.MustParseAddr("198.18.0.7")}, spec: w},
		&instance{name: "web-1", index: 1, host: &netns.Host{IP: netip.MustParseAddr("198.18.0.8")}, spec: w}
	ready.ready.Store(true)
	m := &Mesh{plan: p, workloads: map[string]*workloadRun{workloadKey(w): {spec: w, instances: []*instance{ready, unready}}}}
	m.cfg.StateDir = state
	if err := m.writeControllerManifests(); err != nil {
		t.Fatal(err)
	}
	snap, _, err := files.Load(filepath.Join(state, controllerDir))
	if err != nil {
		t.Fatalf("the controller's directory does not load: %v", err)
	}
	var got []string
	for _, in := range snap.Instances {
		got = append(got, fmt.Sprintf("%s %s ready=%v", in.Name, in.IP, in.Ready))
	}
	want := []string{"web-0 198.18.0.7 ready=true", "web-1 198.18.0.8 ready=false"}
	if !slices.Equal(got, want) {
		t.Errorf("the controller's instances: %q, want %q", got, want)
	}
}
