package inbound

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/model"
)

const td = "example.org"

func meta(name string, age int) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: "demo", Name: name, CreationTimestamp: metav1.NewTime(time.Unix(1e9, 0).Add(-time.Duration(age) * time.Hour))}
}

func webInstance() model.Instance {
	return model.Instance{Namespace: "demo", Name: "web-0", Workload: "web", Labels: map[string]string{"app": "web"},
		ServiceAccount: "web", Ports: map[string]uint16{"http": 8080}, Meshed: true,
		ProbePaths: []model.ProbePath{{Port: 8080, Path: "/ready"}, {Port: 9090, Path: "/other"}}}
}

func server(name string, age int, port intstr.IntOrString, access string) *policyv1.Server {
	return &policyv1.Server{ObjectMeta: meta(name, age), Spec: policyv1.ServerSpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Port: port, AccessPolicy: access}}
}

func authzPolicy(name string, target policyv1.LocalRef, refs ...policyv1.NamespacedRef) *policyv1.AuthorizationPolicy {
	return &policyv1.AuthorizationPolicy{ObjectMeta: meta(name, 0), Spec: policyv1.AuthorizationPolicySpec{TargetRef: target, RequiredAuthenticationRefs: refs}}
}

var (
	serverTarget = policyv1.LocalRef{Group: policyv1.Group, Kind: "Server", Name: "web-http"}
	meshRef      = policyv1.NamespacedRef{Group: policyv1.Group, Kind: policyv1.MeshTLSAuthenticationKind, Name: "clients"}
	netRef       = policyv1.NamespacedRef{Group: policyv1.Group, Kind: policyv1.NetworkAuthenticationKind, Name: "lan"}
)

func compile(t *testing.T, c *Compiler, in model.InboundInputs) (*authz.Inbound, *Compiled) {
	t.Helper()
	in.TrustDomain = td
	if in.Instances == nil {
		in.Instances = []model.Instance{webInstance()}
	}
	out := c.Update(in)
	got, ok := out.Inbound("demo", "web-0", 8080)
	if !ok {
		t.Fatal("Inbound: instance unknown")
	}
	return got, out
}

func TestDefaultPolicyChain(t *testing.T) {
	annotated := webInstance()
	annotated.DefaultInboundPolicy = "audit"
	ns := []model.Namespace{{Name: "demo", Annotations: map[string]string{policyv1.DefaultPolicyAnnotation: "cluster-authenticated"}}}
	for _, tc := range []struct {
		name string
		flag authz.DefaultPolicy
		in   model.InboundInputs
		want authz.DefaultPolicy
	}{
		{"mesh default", "", model.InboundInputs{}, authz.AllUnauthenticated},
		{"controller flag", authz.AllAuthenticated, model.InboundInputs{}, authz.AllAuthenticated},
		{"namespace over flag", authz.Deny, model.InboundInputs{Namespaces: ns}, authz.ClusterAuthenticated},
		{"instance over namespace", authz.Deny, model.InboundInputs{Namespaces: ns, Instances: []model.Instance{annotated}}, authz.Audit},
		{"server over annotations", "", model.InboundInputs{Namespaces: ns, Instances: []model.Instance{annotated},
			Servers: []*policyv1.Server{server("web-http", 1, intstr.FromString("http"), "")}}, authz.Deny},
		{"server access policy", "", model.InboundInputs{Servers: []*policyv1.Server{server("web-http", 1, intstr.FromInt32(8080), "cluster-unauthenticated")}}, authz.ClusterUnauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := compile(t, NewCompiler(Config{DefaultPolicy: tc.flag}, nil), tc.in)
			if got.Default != tc.want {
				t.Fatalf("Default = %q, want %q", got.Default, tc.want)
			}
			if !reflect.DeepEqual(got.ProbePaths, []string{"/ready"}) || !reflect.DeepEqual(got.ClusterNetworks, DefaultClusterNetworks) {
				t.Fatalf("ProbePaths %v ClusterNetworks %v", got.ProbePaths, got.ClusterNetworks)
			}
		})
	}
}

func TestOldestServerWins(t *testing.T) {
	got, _ := compile(t, NewCompiler(Config{}, nil), model.InboundInputs{Servers: []*policyv1.Server{
		server("young", 1, intstr.FromInt32(8080), "audit"), server("old", 5, intstr.FromString("http"), "all-authenticated")}})
	if got.Server != "demo/old" || got.Default != authz.AllAuthenticated {
		t.Fatalf("Server %q Default %q, want demo/old all-authenticated", got.Server, got.Default)
	}
}

func TestAuthorizationsCompile(t *testing.T) {
	in := model.InboundInputs{
		Servers: []*policyv1.Server{server("web-http", 1, intstr.FromInt32(8080), "")},
		MeshTLSAuthentications: []*policyv1.MeshTLSAuthentication{{ObjectMeta: meta("clients", 0), Spec: policyv1.MeshTLSAuthenticationSpec{
			IdentityRefs: []policyv1.NamespacedRef{{Kind: "ServiceAccount", Name: "front"}, {Kind: "Namespace", Name: "ops"}}}}},
		NetworkAuthentications: []*policyv1.NetworkAuthentication{{ObjectMeta: meta("lan", 0), Spec: policyv1.NetworkAuthenticationSpec{
			Networks: []policyv1.Network{{Cidr: "10.0.0.0/8", Except: []string{"10.9.0.0/16"}}}}}},
		AuthorizationPolicies: []*policyv1.AuthorizationPolicy{
			authzPolicy("by-server", serverTarget, meshRef, netRef),
			authzPolicy("by-namespace", policyv1.LocalRef{Kind: "Namespace", Name: "demo"}, policyv1.NamespacedRef{Kind: "ServiceAccount", Name: "prom", Namespace: "monitoring"}),
			authzPolicy("other-server", policyv1.LocalRef{Group: policyv1.Group, Kind: "Server", Name: "nope"}, meshRef),
		},
	}
	got, out := compile(t, NewCompiler(Config{}, nil), in)
	if len(out.Errors) != 0 {
		t.Fatalf("errors: %v", out.Errors)
	}
	want := []authz.Authorization{
		{Name: "demo/by-server",
			MeshTLS:  &authz.MeshTLS{Identities: []string{"spiffe://example.org/ns/demo/sa/front"}, Prefixes: []string{"spiffe://example.org/ns/ops/sa/"}},
			Networks: []authz.Network{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Except: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}}}},
		{Name: "demo/by-namespace", MeshTLS: &authz.MeshTLS{Identities: []string{"spiffe://example.org/ns/monitoring/sa/prom"}}},
	}
	if !reflect.DeepEqual(got.Authorizations, want) {
		t.Fatalf("Authorizations:\n%+v\nwant\n%+v", got.Authorizations, want)
	}
}

func TestRouteTargetedPolicy(t *testing.T) {
	group, kind := gatewayv1.Group(policyv1.Group), gatewayv1.Kind("Server")
	prefix := gatewayv1.PathMatchPathPrefix
	public := "/public"
	route := &gatewayv1.HTTPRoute{ObjectMeta: meta("public", 0), Spec: gatewayv1.HTTPRouteSpec{
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Group: &group, Kind: &kind, Name: "web-http"}}},
		Rules:           []gatewayv1.HTTPRouteRule{{Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &prefix, Value: &public}}}}},
	}}
	got, out := compile(t, NewCompiler(Config{}, nil), model.InboundInputs{
		Servers:    []*policyv1.Server{server("web-http", 1, intstr.FromInt32(8080), "")},
		HTTPRoutes: []*gatewayv1.HTTPRoute{route},
		AuthorizationPolicies: []*policyv1.AuthorizationPolicy{authzPolicy("public-any", policyv1.LocalRef{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "public"},
			policyv1.NamespacedRef{Kind: "ServiceAccount", Name: "front"})},
	})
	if len(out.Errors) != 0 {
		t.Fatalf("errors: %v", out.Errors)
	}
	if len(got.Authorizations) != 0 || len(got.Routes) != 1 {
		t.Fatalf("Authorizations %+v Routes %+v", got.Authorizations, got.Routes)
	}
	r := got.Routes[0]
	if r.Name != "demo/public" || len(r.Matches) != 1 || r.Matches[0].Path.Value != "/public" || len(r.Authorizations) != 1 || r.Authorizations[0].Name != "demo/public-any" {
		t.Fatalf("route = %+v", r)
	}
}

// TestInvalidObjectKeepsLastGood: an edit that breaks an object is
// reported with object and field, and its previous version stays in force.
func TestInvalidObjectKeepsLastGood(t *testing.T) {
	c := NewCompiler(Config{}, nil)
	lan := &policyv1.NetworkAuthentication{ObjectMeta: meta("lan", 0), Spec: policyv1.NetworkAuthenticationSpec{Networks: []policyv1.Network{{Cidr: "10.0.0.0/8"}}}}
	in := model.InboundInputs{
		Servers:                []*policyv1.Server{server("web-http", 1, intstr.FromInt32(8080), "")},
		NetworkAuthentications: []*policyv1.NetworkAuthentication{lan},
		AuthorizationPolicies:  []*policyv1.AuthorizationPolicy{authzPolicy("lan", serverTarget, netRef)},
	}
	good, _ := compile(t, c, in)

	broken := lan.DeepCopy()
	broken.Spec.Networks[0].Cidr = "10.0.0.0/40"
	badServer := server("web-http", 1, intstr.FromInt32(8080), "sometimes")
	badPolicy := authzPolicy("lan", serverTarget, policyv1.NamespacedRef{Group: policyv1.Group, Kind: "Sorcery", Name: "x"})
	in.NetworkAuthentications = []*policyv1.NetworkAuthentication{broken}
	in.Servers = []*policyv1.Server{badServer}
	in.AuthorizationPolicies = []*policyv1.AuthorizationPolicy{badPolicy}
	got, out := compile(t, c, in)
	var texts []string
	for _, e := range out.Errors {
		texts = append(texts, e.Error())
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{
		`AuthorizationPolicy demo/lan: spec.requiredAuthenticationRefs[0].kind: "policy.skein.io/Sorcery" is not a kind`,
		`NetworkAuthentication demo/lan: spec.networks[0].cidr: "10.0.0.0/40" is not a CIDR`,
		`Server demo/web-http: spec.accessPolicy: "sometimes" is not a default policy`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("errors:\n%s\nwant a line containing %s", all, want)
		}
	}
	if !reflect.DeepEqual(got, good) {
		t.Fatalf("after broken edits the policy changed:\n%+v\nwant the last good\n%+v", got, good)
	}

	// A Server whose named port the selected pods lack is refused too.
	in.Servers = []*policyv1.Server{server("web-http", 1, intstr.FromString("grpc"), "")}
	_, out = compile(t, c, in)
	if len(out.Errors) == 0 || !strings.Contains(out.Errors[len(out.Errors)-1].Error(), `Server demo/web-http: spec.port: none of the 1 pods spec.podSelector selects has a port named "grpc"`) {
		t.Fatalf("errors = %v", out.Errors)
	}
}
