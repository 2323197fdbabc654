package authz

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/skeinmesh/skein/internal/routes"
)

const (
	frontend = "spiffe://skein.local/ns/shop/sa/frontend"
	batch    = "spiffe://skein.local/ns/jobs/sa/batch"
)

var (
	inCluster  = netip.MustParseAddr("10.1.2.3")
	outCluster = netip.MustParseAddr("203.0.113.9")
	cluster    = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
)

func get(path string) *Request { return &Request{Method: "GET", Path: path} }

// TestDecideDefaultPolicies is each default policy for what no
// authorization allows, for meshed and unmeshed clients inside and outside
// the cluster networks, over HTTP and opaque TCP alike.
func TestDecideDefaultPolicies(t *testing.T) {
	clients := map[string]Client{
		"meshed-in":    {Addr: inCluster, Identity: frontend},
		"meshed-out":   {Addr: outCluster, Identity: frontend},
		"unmeshed-in":  {Addr: inCluster},
		"unmeshed-out": {Addr: outCluster},
	}
	allowed := map[DefaultPolicy][]string{
		AllUnauthenticated:     {"meshed-in", "meshed-out", "unmeshed-in", "unmeshed-out"},
		AllAuthenticated:       {"meshed-in", "meshed-out"},
		ClusterUnauthenticated: {"meshed-in", "unmeshed-in"},
		ClusterAuthenticated:   {"meshed-in"},
		Deny:                   nil,
		"":                     nil, // unset: fail closed
		"allow-everyone":       nil, // unknown: fail closed
	}
	for policy, want := range allowed {
		for name, c := range clients {
			for _, r := range []*Request{get("/"), nil} {
				in := &Inbound{Port: 8080, Default: policy, ClusterNetworks: cluster}
				d := in.Decide(c, r)
				wantAllowed := contains(want, name)
				if d.Allowed != wantAllowed || d.Audit || d.Default != policy || d.Authorization != "" {
					t.Errorf("%q, %s, http=%v: got %+v, want allowed=%v by the default", policy, name, r != nil, d, wantAllowed)
				}
				if !strings.Contains(d.Reason(), "port 8080") || !strings.Contains(d.Reason(), "no Server owns the port") {
					t.Errorf("%q, %s: reason %q names neither the port nor that no Server owns it", policy, name, d.Reason())
				}
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestDecideAuditAllowsWhatWouldBeDenied(t *testing.T) {
	in := &Inbound{Server: "shop/web", Default: Audit, Authorizations: []Authorization{
		{Name: "shop/frontend-only", MeshTLS: &MeshTLS{Identities: []string{frontend}}},
	}}
	d := in.Decide(Client{Addr: outCluster, Identity: batch}, get("/"))
	if !d.Allowed || !d.Audit || d.Default != Audit || d.Authorization != "" {
		t.Fatalf("audit: got %+v, want allowed with Audit set", d)
	}
	for _, want := range []string{"Server shop/web", "no authorization matched", batch, "audit", "would be denied"} {
		if !strings.Contains(d.Reason(), want) {
			t.Errorf("audit reason %q lacks %q", d.Reason(), want)
		}
	}
	// What the policy allows is not an audit event.
	d = in.Decide(Client{Addr: inCluster, Identity: frontend}, get("/"))
	if !d.Allowed || d.Audit || d.Authorization != "shop/frontend-only" {
		t.Fatalf("authorized under audit: got %+v", d)
	}
}

func TestDecideNilInboundFailsClosed(t *testing.T) {
	var in *Inbound
	for _, r := range []*Request{get("/ready"), nil} {
		d := in.Decide(Client{Addr: inCluster, Identity: frontend}, r)
		if d.Allowed || d.Default != Deny || !strings.Contains(d.Reason(), "fail closed") {
			t.Fatalf("nil Inbound: got %+v, want denied (fail closed)", d)
		}
	}
}

// TestDecideServerAuthorizations covers identity and network
// authentications and their combination (all must match).
func TestDecideServerAuthorizations(t *testing.T) {
	tests := []struct {
		name  string
		authz Authorization
		c     Client
		want  bool
	}{
		{"exact identity", Authorization{MeshTLS: &MeshTLS{Identities: []string{frontend}}}, Client{Identity: frontend}, true},
		{"other identity", Authorization{MeshTLS: &MeshTLS{Identities: []string{frontend}}}, Client{Identity: batch}, false},
		{"unmeshed against identities", Authorization{MeshTLS: &MeshTLS{Identities: []string{"*"}}}, Client{Addr: inCluster}, false},
		{"star is any meshed client", Authorization{MeshTLS: &MeshTLS{Identities: []string{"*"}}}, Client{Identity: batch}, true},
		{"suffix is not a prefix", Authorization{MeshTLS: &MeshTLS{Identities: []string{"*.frontend.shop"}}}, Client{Identity: "spiffe://x/frontend.shop.evil"}, false},
		{"suffix needs its dot", Authorization{MeshTLS: &MeshTLS{Identities: []string{"*.example.com"}}}, Client{Identity: "notexample.com"}, false},
		{"suffix matches a subdomain", Authorization{MeshTLS: &MeshTLS{Identities: []string{"*.example.com"}}}, Client{Identity: "a.b.example.com"}, true},
		{"namespace prefix", Authorization{MeshTLS: &MeshTLS{Prefixes: []string{"spiffe://skein.local/ns/shop/sa/"}}}, Client{Identity: frontend}, true},
		{"other namespace", Authorization{MeshTLS: &MeshTLS{Prefixes: []string{"spiffe://skein.local/ns/shop/sa/"}}}, Client{Identity: batch}, false},
		{"empty prefix matches nothing", Authorization{MeshTLS: &MeshTLS{Prefixes: []string{""}}}, Client{Identity: batch}, false},
		{"empty identities match nothing", Authorization{MeshTLS: &MeshTLS{}}, Client{Identity: batch}, false},
		{"network", Authorization{Networks: []Network{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}}, Client{Addr: inCluster}, true},
		{"outside the network", Authorization{Networks: []Network{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}}, Client{Addr: outCluster}, false},
		{"no address", Authorization{Networks: []Network{{Prefix: netip.MustParsePrefix("0.0.0.0/0")}}}, Client{}, false},
		{"IPv4 in IPv6 form", Authorization{Networks: []Network{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}}, Client{Addr: netip.MustParseAddr("::ffff:10.1.2.3")}, true},
		{"except", Authorization{Networks: []Network{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Except: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}}}, Client{Addr: inCluster}, false},
		{"except elsewhere", Authorization{Networks: []Network{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Except: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}}}}, Client{Addr: inCluster}, true},
		{"second network", Authorization{Networks: []Network{{Prefix: netip.MustParsePrefix("192.168.0.0/16")}, {Prefix: netip.MustParsePrefix("10.0.0.0/8")}}}, Client{Addr: inCluster}, true},
		{"network and identity both hold", Authorization{Networks: []Network{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}, MeshTLS: &MeshTLS{Identities: []string{frontend}}}, Client{Addr: inCluster, Identity: frontend}, true},
		{"network holds, identity not", Authorization{Networks: []Network{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}, MeshTLS: &MeshTLS{Identities: []string{frontend}}}, Client{Addr: inCluster, Identity: batch}, false},
		{"identity holds, network not", Authorization{Networks: []Network{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}, MeshTLS: &MeshTLS{Identities: []string{frontend}}}, Client{Addr: outCluster, Identity: frontend}, false},
		{"no authentications hold for everyone", Authorization{}, Client{Addr: outCluster}, true},
	}
	for _, tt := range tests {
		tt.authz.Name = "shop/policy"
		in := &Inbound{Server: "shop/web", Default: Deny, Authorizations: []Authorization{tt.authz}}
		for _, r := range []*Request{get("/x"), nil} {
			d := in.Decide(tt.c, r)
			if d.Allowed != tt.want {
				t.Errorf("%s (http=%v): allowed=%v, want %v (%s)", tt.name, r != nil, d.Allowed, tt.want, d.Reason())
				continue
			}
			if tt.want {
				if d.Authorization != "shop/policy" || d.Default != "" || !strings.Contains(d.Reason(), "AuthorizationPolicy shop/policy") {
					t.Errorf("%s: allowed without naming the policy: %+v", tt.name, d)
				}
				continue
			}
			if d.Default != Deny || d.Server != "shop/web" ||
				!strings.Contains(d.Reason(), "Server shop/web") || !strings.Contains(d.Reason(), "no authorization matched") {
				t.Errorf("%s: denial does not explain itself: %+v", tt.name, d)
			}
		}
	}
}

func TestDecideFirstMatchingAuthorizationIsNamed(t *testing.T) {
	in := &Inbound{Server: "shop/web", Default: Deny, Authorizations: []Authorization{
		{Name: "shop/batch", MeshTLS: &MeshTLS{Identities: []string{batch}}},
		{Name: "shop/any-meshed", MeshTLS: &MeshTLS{Identities: []string{"*"}}},
		{Name: "shop/frontend", MeshTLS: &MeshTLS{Identities: []string{frontend}}},
	}}
	if d := in.Decide(Client{Identity: frontend}, nil); d.Authorization != "shop/any-meshed" {
		t.Fatalf("got %+v, want the first policy that matches", d)
	}
}

func perRouteInbound() *Inbound {
	return &Inbound{
		Server:  "shop/web",
		Default: Deny,
		Authorizations: []Authorization{
			{Name: "shop/ops", MeshTLS: &MeshTLS{Identities: []string{batch}}},
		},
		Routes: []Route{
			{
				Name: "shop/public",
				Matches: []routes.Match{
					{Path: &routes.PathMatch{Type: routes.PathPrefix, Value: "/public"}, Method: "GET"},
				},
				Authorizations: []Authorization{{Name: "shop/frontend-public", MeshTLS: &MeshTLS{Identities: []string{frontend}}}},
			},
			{
				Name:    "shop/admin",
				Matches: []routes.Match{{Path: &routes.PathMatch{Type: routes.PathPrefix, Value: "/admin"}}},
			},
			{
				Name: "shop/beta",
				Matches: []routes.Match{{
					Path:    &routes.PathMatch{Type: routes.PathExact, Value: "/beta"},
					Headers: []routes.ValueMatch{{Name: "X-Canary", Value: "1"}},
				}},
				Authorizations: []Authorization{{Name: "shop/anyone", Networks: []Network{{Prefix: netip.MustParsePrefix("0.0.0.0/0")}}}},
			},
		},
		ProbePaths: []string{"/ready", "/admin/live"},
	}
}

func TestDecidePerRoute(t *testing.T) {
	in := perRouteInbound()
	canary := func(name string) (string, bool) {
		if name == "x-canary" {
			return "1", true
		}
		return "", false
	}
	tests := []struct {
		name      string
		c         Client
		r         *Request
		allowed   bool
		noRoute   bool
		route     string
		authz     string
		inReason  string
		notReason string
	}{
		{"public route allows frontend", Client{Identity: frontend}, get("/public/a?x=1"), true, false, "shop/public", "shop/frontend-public", "on route shop/public", ""},
		{"admin route denies frontend", Client{Identity: frontend}, get("/admin"), false, false, "shop/admin", "", "no authorization matched", ""},
		{"server authorization covers every route", Client{Identity: batch}, get("/admin/users"), true, false, "shop/admin", "shop/ops", "AuthorizationPolicy shop/ops", ""},
		{"route method must match", Client{Identity: frontend}, &Request{Method: "POST", Path: "/public"}, false, true, "", "", "none matches POST /public", ""},
		{"prefix by segment", Client{Identity: frontend}, get("/publicity"), false, true, "", "", "has routes and none matches", ""},
		{"header match", Client{Addr: outCluster}, &Request{Method: "GET", Path: "/beta", Header: canary}, true, false, "shop/beta", "shop/anyone", "", ""},
		{"header missing", Client{Addr: outCluster}, get("/beta"), false, true, "", "", "", ""},
		{"probe path no route matches", Client{Addr: outCluster}, get("/ready?full=1"), true, false, "", "", "kubelet probe", ""},
		{"probe by HEAD", Client{Addr: outCluster}, &Request{Method: "HEAD", Path: "/ready"}, true, false, "", "", "kubelet probe", ""},
		{"probe path is GET/HEAD only", Client{Addr: outCluster}, &Request{Method: "POST", Path: "/ready"}, false, true, "", "", "", ""},
		{"a route over a probe path takes it under policy", Client{Addr: outCluster}, get("/admin/live"), false, false, "shop/admin", "", "no authorization matched", "probe"},
	}
	for _, tt := range tests {
		d := in.Decide(tt.c, tt.r)
		if d.Allowed != tt.allowed || d.NoRoute != tt.noRoute || d.Route != tt.route || d.Authorization != tt.authz {
			t.Errorf("%s: got %+v", tt.name, d)
		}
		if !strings.Contains(d.Reason(), "Server shop/web") || !strings.Contains(d.Reason(), tt.inReason) {
			t.Errorf("%s: reason %q lacks the Server or %q", tt.name, d.Reason(), tt.inReason)
		}
		if tt.notReason != "" && strings.Contains(d.Reason(), tt.notReason) {
			t.Errorf("%s: reason %q mentions %q", tt.name, d.Reason(), tt.notReason)
		}
	}
}

// TestDecideOpaqueIgnoresRoutes: a connection that is not HTTP is
// authorized by the Server's own authorizations, whatever its routes say.
func TestDecideOpaqueIgnoresRoutes(t *testing.T) {
	in := perRouteInbound()
	if d := in.Decide(Client{Identity: batch}, nil); !d.Allowed || d.Authorization != "shop/ops" || d.Route != "" {
		t.Fatalf("server-authorized TCP: got %+v", d)
	}
	if d := in.Decide(Client{Identity: frontend}, nil); d.Allowed || d.NoRoute || d.Default != Deny {
		t.Fatalf("route-only-authorized client over TCP: got %+v, want denied by the default", d)
	}
}

func TestDecideProbePaths(t *testing.T) {
	in := &Inbound{Server: "shop/web", Default: Deny, ProbePaths: []string{"/healthz"}}
	for _, tt := range []struct {
		r    *Request
		want bool
	}{
		{get("/healthz"), true},
		{&Request{Method: "HEAD", Path: "/healthz?verbose"}, true},
		{&Request{Method: "POST", Path: "/healthz"}, false},
		{get("/healthz/deep"), false},
		{nil, false}, // opaque TCP is never a probe
	} {
		d := in.Decide(Client{Addr: outCluster}, tt.r)
		if d.Allowed != tt.want {
			t.Errorf("%+v: got %+v, want allowed=%v", tt.r, d, tt.want)
		}
		if d.Probe != tt.want {
			t.Errorf("%+v: Probe=%v, want %v", tt.r, d.Probe, tt.want)
		}
		if tt.want && !strings.Contains(d.Reason(), "kubelet probe") {
			t.Errorf("probe allowed without saying so: %q", d.Reason())
		}
	}
	// Without Server (port default deny), probes stay allowed too.
	bare := &Inbound{Port: 8080, Default: Deny, ProbePaths: []string{"/healthz"}}
	if d := bare.Decide(Client{Addr: outCluster}, get("/healthz")); !d.Allowed || !strings.Contains(d.Reason(), "port 8080") {
		t.Fatalf("probe on a port without Server: got %+v", d)
	}
}

func TestMayCall(t *testing.T) {
	in := perRouteInbound()
	for _, tt := range []struct {
		c    Client
		want bool
	}{
		{Client{Identity: batch}, true},                           // the Server's own authorization
		{Client{Identity: frontend}, true},                        // a route's authorization
		{Client{Addr: outCluster}, true},                          // the beta route allows 0.0.0.0/0
		{Client{Addr: netip.MustParseAddr("2001:db8::1")}, false}, // nothing allows it
	} {
		if got := in.MayCall(tt.c); got != tt.want {
			t.Errorf("MayCall(%+v) = %v, want %v", tt.c, got, tt.want)
		}
	}
	if (*Inbound)(nil).MayCall(Client{Identity: batch}) {
		t.Error("a nil Inbound allows a client")
	}
	open := &Inbound{Port: 80, Default: AllUnauthenticated}
	if !open.MayCall(Client{Addr: outCluster}) {
		t.Error("all-unauthenticated does not allow an unmeshed client")
	}
}
