package outbound

import (
	"context"
	"net/netip"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/routes"
)

const webKey = "web.test.svc.cluster.local:8080"

func TestOwnPolicy(t *testing.T) {
	db := &destBreakers{key: webKey}
	for _, tt := range []struct {
		name    string
		policy  *routes.Policy
		backend string
		want    bool
	}{
		{"not split: the policy looked up for this destination", &routes.Policy{Service: "other/x", Port: 1}, "", true},
		{"no policy, not split", noPolicy, "", true},
		{"split here from its own policy", &routes.Policy{Service: "test/web", Port: 8080}, webKey, true},
		{"split here from another Service", &routes.Policy{Service: "test/api", Port: 8080}, webKey, false},
		{"another port", &routes.Policy{Service: "test/web", Port: 8081}, webKey, false},
		{"name a prefix of the host's", &routes.Policy{Service: "test/we", Port: 8080}, webKey, false},
		{"namespace a prefix", &routes.Policy{Service: "tes/web", Port: 8080}, webKey, false},
		{"no policy, split here", noPolicy, webKey, false},
	} {
		if got := db.ownPolicy(tt.policy, &stack.RequestInfo{Backend: tt.backend}); got != tt.want {
			t.Errorf("%s: ownPolicy = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestBreakerScopeFollowsPolicyVersions: a rule with a breaker of its own
// gets a route scope; a rule with the Service's does not; the Service's
// failure class applies; a new version of the policy keeps the route
// scope (and its endpoints' state), and a rule that lost its own breaker
// loses its scope.
func TestBreakerScopeFollowsPolicyVersions(t *testing.T) {
	addr := netip.MustParseAddrPort("10.0.0.1:8080")
	b := balance.New(balance.Options{})
	b.Update([]discovery.Endpoint{{Addr: addr}, {Addr: netip.MustParseAddrPort("10.0.0.2:8080")}})
	db := newDestBreakers(webKey, b, balance.DefaultBreaker())

	policy := func(own *routes.Breaker) *routes.Policy {
		service := &routes.Breaker{Consecutive: 7, FailureHTTP: []routes.StatusRange{{Min: 429, Max: 429}, {Min: 500, Max: 599}}}
		return &routes.Policy{Service: "test/web", Port: 8080, Defaults: routes.Rule{Breaker: service},
			Routes: []routes.Route{{Kind: "HTTPRoute", Namespace: "test", Name: "a", Rules: []routes.Rule{
				{Breaker: own}, {Breaker: service},
			}}}}
	}
	v1 := policy(&routes.Breaker{Consecutive: 2})
	service := db.scope(&stack.RequestInfo{Policy: v1, Rule: &v1.Defaults})
	if service.route != "" || !service.failures.Failed(429, "") {
		t.Fatalf("Service-wide scope %+v: want no route and 429 counted as the Service asks", service)
	}
	inherits := db.scope(&stack.RequestInfo{Policy: v1, Rule: &v1.Routes[0].Rules[1]})
	if inherits.route != "" {
		t.Errorf("a rule with the Service's breaker got route scope %q", inherits.route)
	}
	own := db.scope(&stack.RequestInfo{Policy: v1, Rule: &v1.Routes[0].Rules[0]})
	if own.route == "" || own.failures.Failed(429, "") {
		t.Fatalf("a rule with its own breaker: %+v, want a route scope counting the default failures", own)
	}
	h, err := b.PickRoute(context.Background(), own.route, netip.MustParseAddrPort("10.0.0.2:8080"))
	if err != nil {
		t.Fatal(err)
	}
	h.Done(true)

	v2 := policy(&routes.Breaker{Consecutive: 3})
	if again := db.scope(&stack.RequestInfo{Policy: v2, Rule: &v2.Routes[0].Rules[0]}); again.route != own.route {
		t.Fatalf("the policy's new version moved the rule to scope %q from %q", again.route, own.route)
	}
	for _, s := range b.SnapshotRoute(own.route) {
		if s.Addr == addr && s.ConsecutiveFailures != 1 {
			t.Errorf("the route scope lost its state over a policy change: %+v", s)
		}
	}
	if got := db.routeLabel(own.route); got != "test/a" {
		t.Errorf("route_name of the scope = %q, want test/a", got)
	}

	v3 := policy(nil)
	if s := db.scope(&stack.RequestInfo{Policy: v3, Rule: &v3.Routes[0].Rules[0]}); s.route != "" {
		t.Errorf("a rule without a breaker of its own kept scope %q", s.route)
	}
	if got := db.routeLabel(own.route); got != "" {
		t.Errorf("the dropped scope still has a label %q", got)
	}
}
