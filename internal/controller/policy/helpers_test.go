package policy

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/routes"
)

// svc is a Service demo/<name> with one port 8080 and a cluster IP.
func svc(name, ip string, ann map[string]string) *model.Service {
	s := &model.Service{Namespace: "demo", Name: name, Ports: []model.ServicePort{{Name: "http", Port: 8080}}, Annotations: ann}
	if ip != "" {
		s.ClusterIPs = []netip.Addr{netip.MustParseAddr(ip)}
	}
	return s
}

// httpRoute decodes an HTTPRoute from YAML (the namespace defaults to demo).
func httpRoute(t *testing.T, doc string) *gatewayv1.HTTPRoute {
	t.Helper()
	r := &gatewayv1.HTTPRoute{}
	if err := yaml.UnmarshalStrict([]byte(doc), r); err != nil {
		t.Fatalf("decoding HTTPRoute: %v\n%s", err, doc)
	}
	if r.Namespace == "" {
		r.Namespace = "demo"
	}
	return r
}

func grpcRoute(t *testing.T, doc string) *gatewayv1.GRPCRoute {
	t.Helper()
	r := &gatewayv1.GRPCRoute{}
	if err := yaml.UnmarshalStrict([]byte(doc), r); err != nil {
		t.Fatalf("decoding GRPCRoute: %v\n%s", err, doc)
	}
	if r.Namespace == "" {
		r.Namespace = "demo"
	}
	return r
}

// created sets a route's creation time to t0 plus d.
func created[T interface{ SetCreationTimestamp(metav1.Time) }](r T, d time.Duration) T {
	r.SetCreationTimestamp(metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(d)))
	return r
}

type inputs struct {
	services []*model.Service
	http     []*gatewayv1.HTTPRoute
	grpc     []*gatewayv1.GRPCRoute
}

func (in inputs) model() model.PolicyInputs {
	return model.PolicyInputs{ClusterDomain: "cluster.local", Services: in.services, HTTPRoutes: in.http, GRPCRoutes: in.grpc}
}

// compile compiles in with a fresh compiler and fails on any error.
func compile(t *testing.T, in inputs) *Compiled {
	t.Helper()
	c := NewCompiler().Update(in.model())
	for _, err := range c.Errors {
		t.Errorf("unexpected error: %v", err)
	}
	return c
}

const webDst = "web.demo.svc.cluster.local:8080"

// policyOf compiles in and returns the policy of web:8080.
func policyOf(t *testing.T, in inputs) *routes.Policy {
	t.Helper()
	p := compile(t, in).Policy(webDst)
	if p == nil {
		t.Fatalf("no policy for %s", webDst)
	}
	return p
}

// errorTexts lists the errors' texts.
func errorTexts(errs []*Error) string {
	var s []string
	for _, e := range errs {
		s = append(s, e.Error())
	}
	return strings.Join(s, "\n")
}

// backends lists "authority=weight" of a rule.
func backends(r routes.Rule) []string {
	var out []string
	for _, b := range r.Backends {
		out = append(out, b.Authority+"="+strconv.Itoa(int(b.Weight)))
	}
	return out
}

const parentWeb = `
  parentRefs:
  - {group: "", kind: Service, name: web, port: 8080}`
