package policy

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestServerParentedRoutesAreNotOutbound: a route whose parent is a
// policy.skein.io Server is an inbound route; the outbound compiler
// neither refuses it nor attaches it, and its matches compile for the
// inbound side.
func TestServerParentedRoutesAreNotOutbound(t *testing.T) {
	group, kind := gatewayv1.Group("policy.skein.io"), gatewayv1.Kind("Server")
	exact := gatewayv1.PathMatchExact
	admin, public := "/admin", "/public"
	hr := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "admin"}, Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Group: &group, Kind: &kind, Name: "web-http"}}},
		Rules: []gatewayv1.HTTPRouteRule{
			{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Value: &public}}}},
			{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &exact, Value: &admin}}}},
		},
	}}
	if errs := ValidateHTTPRoute(hr, nil, "cluster.local"); len(errs) != 0 {
		t.Fatalf("outbound validation refused a Server-parented route: %v", errs)
	}
	matches, errs := HTTPRouteMatches(hr)
	if len(errs) != 0 || len(matches) != 2 || matches[0].Path.Value != "/admin" || matches[1].Path.Value != "/public" {
		t.Fatalf("HTTPRouteMatches = %+v, %v; want /admin (exact) before /public", matches, errs)
	}
	bad := "admin"
	hr.Spec.Rules[1].Matches[0].Path.Value = &bad
	if _, errs := HTTPRouteMatches(hr); len(errs) != 1 || errs[0].Error() != `HTTPRoute demo/admin: spec.rules[1].matches[0].path.value: "admin" does not start with /` {
		t.Fatalf("errors = %v", errs)
	}
}
