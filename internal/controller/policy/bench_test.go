package policy

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skeinmesh/skein/internal/model"
)

// BenchmarkCompile1000Services compiles 1,000 Services with two routes
// each (a split and a regex match), then builds every policy: what one
// change costs the controller on a cluster of that size.
func BenchmarkCompile1000Services(b *testing.B) {
	var in model.PolicyInputs
	in.ClusterDomain = "cluster.local"
	for i := range 1000 {
		name := fmt.Sprintf("svc-%d", i)
		in.Services = append(in.Services, &model.Service{Namespace: "demo", Name: name, Ports: []model.ServicePort{{Port: 8080}},
			Annotations: map[string]string{AnnRetryHTTP: "5xx", AnnTimeoutRequest: "2s"}})
		port := gatewayv1.PortNumber(8080)
		w1, w2 := int32(90), int32(10)
		path := fmt.Sprintf("/item/%d/[0-9]+", i)
		regex := gatewayv1.PathMatchRegularExpression
		for j, rule := range []gatewayv1.HTTPRouteRule{
			{BackendRefs: []gatewayv1.HTTPBackendRef{
				{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: &port}, Weight: &w1}},
				{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: &port}, Weight: &w2}},
			}},
			{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &regex, Value: &path}}}},
		} {
			in.HTTPRoutes = append(in.HTTPRoutes, &gatewayv1.HTTPRoute{
				ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: fmt.Sprintf("%s-%d", name, j)},
				Spec: gatewayv1.HTTPRouteSpec{
					CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
						Group: ptr(gatewayv1.Group("")), Kind: ptr(gatewayv1.Kind("Service")), Name: gatewayv1.ObjectName(name)}}},
					Rules: []gatewayv1.HTTPRouteRule{rule},
				},
			})
		}
	}
	c := NewCompiler()
	b.ReportAllocs()
	for b.Loop() {
		out := c.Update(in)
		if len(out.Errors) > 0 {
			b.Fatal(out.Errors[0])
		}
		for i := range 1000 {
			if p := out.Policy(fmt.Sprintf("svc-%d.demo.svc.cluster.local:8080", i)); len(p.Routes) != 2 {
				b.Fatalf("policy %d has %d routes", i, len(p.Routes))
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }
