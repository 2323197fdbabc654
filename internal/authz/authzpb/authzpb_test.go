package authzpb

import (
	"net/netip"
	"reflect"
	"regexp"
	"testing"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/routes"
)

func TestRoundTrip(t *testing.T) {
	mesh := &authz.MeshTLS{Identities: []string{"spiffe://td/ns/a/sa/b", "*.td"}, Prefixes: []string{"spiffe://td/ns/ops/sa/"}}
	in := &authz.Inbound{
		Port: 8080, Server: "demo/web", Protocol: "HTTP/2", Default: authz.Audit,
		Authorizations: []authz.Authorization{{Name: "demo/a", MeshTLS: mesh,
			Networks: []authz.Network{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Except: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}}}},
		Routes: []authz.Route{{Name: "demo/admin", Matches: []routes.Match{{Method: "GET",
			Path: &routes.PathMatch{Type: routes.PathRegex, Value: "/a.*", Regex: regexp.MustCompile(`^(?:/a.*)$`)}}},
			Authorizations: []authz.Authorization{{Name: "demo/b", MeshTLS: mesh}}}},
		ClusterNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		RateLimit:       &authz.RateLimit{Total: 100, PerIdentity: 10, Overrides: []authz.RateLimitOverride{{RequestsPerSecond: 50, Identities: []string{"spiffe://td/ns/a/sa/b"}}}},
		ProbePaths:      []string{"/ready"},
	}
	got, err := FromProto(ToProto(in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("round trip:\n%+v\nwant\n%+v", got, in)
	}
	if got, err := FromProto(ToProto(nil)); got != nil || err != nil {
		t.Fatalf("missing policy = %v, %v", got, err)
	}
	bad := ToProto(in)
	bad.DefaultPolicy = "maybe"
	if _, err := FromProto(bad); err == nil {
		t.Fatal("an unknown default policy was accepted")
	}
}
