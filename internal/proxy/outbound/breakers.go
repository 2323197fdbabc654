package outbound

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/routes"
)

// How a destination's breakers follow the policies of the requests that
// reach it (the route layer sets req.Info.Policy and Rule):
//
//   - The Service-wide breaker is the destination's own policy's
//     (Policy.Defaults.Breaker; nil policy or nil Breaker: the proxy's
//     default). Only a policy that is the destination's own sets it: one
//     whose request was not sent to another backend, or whose Service and
//     port name the destination. A request a route split off to this
//     destination from another Service's policy is judged by this
//     destination's Service-wide breaker.
//   - A rule whose Breaker differs from its policy's Defaults.Breaker has
//     its own (the controller fills in the Service's breaker for rules that
//     do not set one, so a differing one was set on the route): its
//     requests get a route scope of their own on every destination they
//     reach (balance.SetRouteBreakers). They are picked by that scope's
//     breakers and estimates only, and their outcomes feed only those: a
//     route failing on an endpoint neither ejects it for other routes nor
//     counts towards the Service-wide breaker, and does not raise the
//     endpoint's cost for other routes. Only the endpoint's in-flight count
//     is shared.
//
// A policy change (a new *routes.Policy from the controller) changes the
// breakers' settings in place: the endpoints keep their state. Route scopes
// of rules the new policy no longer has are dropped with their state.

// noPolicy stands for "no policy" (nil) where a pointer is compared.
var noPolicy = &routes.Policy{}

// breakerScope is what the balance layer needs to know about one request:
// the balancer scope it is picked in and what counts as its failure.
type breakerScope struct {
	route    string // balance.PickRoute's key; "" Service-wide
	failures *balance.FailureClass
}

// breakerConfig is a destination's breakers as last applied, immutable:
// a change makes a new one.
type breakerConfig struct {
	serviceFrom *routes.Policy // the policy the Service-wide breaker is from; noPolicy: the default
	service     breakerScope
	byPolicy    map[*routes.Policy]*policyScopes
}

// policyScopes are the route scopes one policy defined on the destination.
type policyScopes struct {
	owner string // "namespace/name:port" of the policy's Service
	rules map[*routes.Rule]breakerScope
}

// destBreakers keeps a destination's breakerConfig in step with the
// policies of its requests.
type destBreakers struct {
	key      string // the destination
	balancer *balance.Balancer
	defaults balance.BreakerPolicy // the proxy's, for no policy

	cfg atomic.Pointer[breakerConfig]

	mu          sync.Mutex        // serialises changes
	routeLabels map[string]string // route scope key -> route_name; guarded by mu
}

func newDestBreakers(key string, b *balance.Balancer, defaults balance.BreakerPolicy) *destBreakers {
	db := &destBreakers{key: key, balancer: b, defaults: defaults, routeLabels: map[string]string{}}
	failures := defaults.Failures
	db.cfg.Store(&breakerConfig{serviceFrom: noPolicy, service: breakerScope{failures: &failures}})
	return db
}

// scope returns the breaker scope of a request, applying its policy first
// if it is new to the destination. The fast path is two pointer compares
// and a map read.
func (db *destBreakers) scope(info *stack.RequestInfo) breakerScope {
	p := info.Policy
	if p == nil {
		p = noPolicy
	}
	cfg := db.cfg.Load()
	if p != cfg.serviceFrom && db.ownPolicy(p, info) {
		cfg = db.applyService(p)
	}
	if p == noPolicy || info.Rule == nil {
		return cfg.service
	}
	ps := cfg.byPolicy[p]
	if ps == nil {
		cfg = db.applyRoutes(p)
		ps = cfg.byPolicy[p]
	}
	if s, ok := ps.rules[info.Rule]; ok {
		return s
	}
	return cfg.service
}

// ownPolicy says whether p (noPolicy for none) is the destination's own:
// the request went to the destination the policy was looked up for, or
// the policy's Service and port are the destination's authority.
func (db *destBreakers) ownPolicy(p *routes.Policy, info *stack.RequestInfo) bool {
	if info.Backend == "" {
		return true
	}
	if p == noPolicy {
		return false
	}
	ns, name, ok := strings.Cut(p.Service, "/")
	if !ok {
		return false
	}
	host, port, ok := strings.Cut(db.key, ":")
	if !ok {
		return false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || uint16(n) != p.Port {
		return false
	}
	// host is name.ns.svc.cluster.local
	rest, ok := strings.CutPrefix(host, name)
	if !ok || !strings.HasPrefix(rest, ".") {
		return false
	}
	rest, ok = strings.CutPrefix(rest[1:], ns)
	return ok && rest == ".svc.cluster.local"
}

// applyService makes p's Defaults.Breaker the Service-wide breaker.
func (db *destBreakers) applyService(p *routes.Policy) *breakerConfig {
	db.mu.Lock()
	defer db.mu.Unlock()
	cur := db.cfg.Load()
	if cur.serviceFrom == p {
		return cur
	}
	policy := db.defaults
	if p != noPolicy && p.Defaults.Breaker != nil {
		policy = balance.BreakerFromRoute(p.Defaults.Breaker)
	}
	db.balancer.SetBreaker(policy)
	next := *cur
	next.serviceFrom = p
	next.service = breakerScope{failures: &policy.Failures}
	db.cfg.Store(&next)
	return &next
}

// applyRoutes sets the route scopes of p's rules that have breakers of
// their own, replacing those of an older version of the same policy.
func (db *destBreakers) applyRoutes(p *routes.Policy) *breakerConfig {
	db.mu.Lock()
	defer db.mu.Unlock()
	cur := db.cfg.Load()
	if cur.byPolicy[p] != nil {
		return cur
	}
	owner := fmt.Sprintf("%s:%d", p.Service, p.Port)
	ps := &policyScopes{owner: owner, rules: map[*routes.Rule]breakerScope{}}
	policies := map[string]balance.BreakerPolicy{}
	for r := range p.Routes {
		route := &p.Routes[r]
		for i := range route.Rules {
			rule := &route.Rules[i]
			if !ownBreaker(rule, p) {
				continue
			}
			key := fmt.Sprintf("%s %s/%s rule %d", owner, route.Kind, route.RouteName(), i)
			bp := balance.BreakerFromRoute(rule.Breaker)
			policies[key] = bp
			ps.rules[rule] = breakerScope{route: key, failures: &bp.Failures}
		}
	}
	db.balancer.SetRouteBreakers(owner, policies)

	next := &breakerConfig{serviceFrom: cur.serviceFrom, service: cur.service, byPolicy: map[*routes.Policy]*policyScopes{p: ps}}
	for old, scopes := range cur.byPolicy {
		if scopes.owner != owner {
			next.byPolicy[old] = scopes
		}
	}
	for key := range db.routeLabels {
		if strings.HasPrefix(key, owner+" ") {
			if _, ok := policies[key]; !ok {
				delete(db.routeLabels, key)
			}
		}
	}
	for r := range p.Routes {
		route := &p.Routes[r]
		for i := range route.Rules {
			if s, ok := ps.rules[&route.Rules[i]]; ok {
				db.routeLabels[s.route] = route.RouteName()
			}
		}
	}
	db.cfg.Store(next)
	return next
}

// ownBreaker says whether rule has a breaker of its own rather than the
// one the controller filled in from the Service's annotations.
func ownBreaker(rule *routes.Rule, p *routes.Policy) bool {
	if rule.Breaker == nil || rule.Breaker == p.Defaults.Breaker {
		return false
	}
	return p.Defaults.Breaker == nil || !reflect.DeepEqual(*rule.Breaker, *p.Defaults.Breaker)
}

// routeLabel is the route_name of a route scope key.
func (db *destBreakers) routeLabel(key string) string {
	if key == "" {
		return ""
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.routeLabels[key]
}

// breakerCounters are the balancer_* counters of breaker state changes.
type breakerCounters struct {
	ejections, restorations, capped *prometheus.CounterVec
}

// CountBreakerChanges registers the balancer_ejections_total,
// balancer_restorations_total and balancer_ejections_capped_total counters
// with r and counts every breaker change from now on, labelled with the
// destination (authority), the endpoint (target_addr) and, for a route's
// own breaker, route_name. Call it before the Upstream serves.
func (u *Upstream) CountBreakerChanges(r prometheus.Registerer) error {
	labels := []string{"authority", "target_addr", "route_name"}
	c := &breakerCounters{
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "balancer_ejections_total",
			Help: "Endpoints ejected by a circuit breaker, by reason (consecutive, success_rate, probe)."}, append(labels, "reason")),
		restorations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "balancer_restorations_total",
			Help: "Ejected endpoints restored by a successful probe."}, labels),
		capped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "balancer_ejections_capped_total",
			Help: "Ejections a circuit breaker held back because the maximum share of endpoints was ejected."}, append(labels, "reason")),
	}
	for _, col := range []prometheus.Collector{c.ejections, c.restorations, c.capped} {
		if err := r.Register(col); err != nil {
			return fmt.Errorf("registering balancer counters: %w", err)
		}
	}
	u.dests.counters.Store(c)
	return nil
}

// count records one breaker event of destination db.
func (c *breakerCounters) count(db *destBreakers, ev balance.BreakerEvent) {
	route := db.routeLabel(ev.Route)
	addr := ev.Endpoint.String()
	switch ev.Kind {
	case balance.Ejected:
		c.ejections.WithLabelValues(db.key, addr, route, ev.Reason).Inc()
	case balance.Restored:
		c.restorations.WithLabelValues(db.key, addr, route).Inc()
	case balance.EjectionCapped:
		c.capped.WithLabelValues(db.key, addr, route, ev.Reason).Inc()
	}
}
