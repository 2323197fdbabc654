package balance

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// scope is one circuit breaker configuration and what it learns about each
// endpoint: the destination's Service-wide scope, or one route's own
// (SetRouteBreakers). A request belongs to exactly one scope: it is picked
// by that scope's breakers and estimates, and its outcome feeds only them.
// The endpoints' in-flight counts are shared by every scope.
type scope struct {
	route  string // "" for the Service-wide scope
	owner  string // who set a route scope (SetRouteBreakers); "" for the Service-wide one
	policy atomic.Pointer[BreakerPolicy]
	// mu serialises ejections, so two cannot both pass the cap.
	mu sync.Mutex
}

func newScope(route, owner string, p BreakerPolicy) *scope {
	s := &scope{route: route, owner: owner}
	s.policy.Store(&p)
	return s
}

// endpointHealth is what one scope learns about one endpoint: its latency
// estimate (with failure penalties), the P2C comparisons it lost while
// idle, and its breaker.
type endpointHealth struct {
	rtt *rttEstimate
	// passedOver counts the P2C comparisons the endpoint lost in this
	// scope while it had nothing in flight; its estimate fades with them
	// (rttSample.fadedAt).
	passedOver atomic.Int64
	breaker    breaker
}

func newEndpointHealth(prior float64, now int64) *endpointHealth {
	return &endpointHealth{rtt: newRTTEstimate(prior, now)}
}

// scopeView is a scope's health of each endpoint of a picker snapshot,
// parallel to picker.entries.
type scopeView struct {
	scope  *scope
	health []*endpointHealth
}

// BreakerEventKind says what a breaker did.
type BreakerEventKind int

const (
	// Ejected: the breaker opened (Reason says why).
	Ejected BreakerEventKind = iota
	// Restored: the half-open probe succeeded and the breaker closed.
	Restored
	// EjectionCapped: the breaker would have opened (Reason says why), but
	// MaxEjectedPercent of the endpoints are ejected already.
	EjectionCapped
)

// BreakerEvent is one change of one endpoint's breaker, for metrics.
type BreakerEvent struct {
	// Route is the route scope's key (SetRouteBreakers); "" for the
	// Service-wide breaker.
	Route    string
	Endpoint netip.AddrPort
	Kind     BreakerEventKind
	// Reason is ReasonConsecutive, ReasonSuccessRate or ReasonProbe.
	Reason string
}

// outcome feeds one request's outcome to the endpoint's breaker in scope s
// and carries out the ejection it calls for, within the cap.
func (b *Balancer) outcome(s *scope, health *endpointHealth, addr netip.AddrPort, probe, failed bool, now int64) {
	p := s.policy.Load()
	reason, closed := health.breaker.record(p, probe, failed, now, b.opts.Rand)
	switch {
	case closed:
		b.tell(BreakerEvent{Route: s.route, Endpoint: addr, Kind: Restored})
	case reason == ReasonProbe:
		b.tell(BreakerEvent{Route: s.route, Endpoint: addr, Kind: Ejected, Reason: reason})
	case reason != "":
		b.ejectWithinCap(s, p, health, addr, reason, now)
	}
}

// ejectWithinCap ejects health's endpoint unless the scope has
// MaxEjectedPercent of the current endpoints (rounded down) ejected
// already; then the breaker stays closed and the failures keep counting,
// so the next one tries again.
func (b *Balancer) ejectWithinCap(s *scope, p *BreakerPolicy, health *endpointHealth, addr netip.AddrPort, reason string, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	view := b.viewOf(s)
	if view == nil {
		return // the scope was dropped
	}
	ejected := 0
	for _, h := range view.health {
		if h.breaker.ejected() {
			ejected++
		}
	}
	if ejected+1 > len(view.health)*p.MaxEjectedPercent/100 {
		b.tell(BreakerEvent{Route: s.route, Endpoint: addr, Kind: EjectionCapped, Reason: reason})
		return
	}
	if health.breaker.eject(p, now, b.opts.Rand) {
		b.tell(BreakerEvent{Route: s.route, Endpoint: addr, Kind: Ejected, Reason: reason})
	}
}

// viewOf is s's view in the current picker; nil when s is gone.
func (b *Balancer) viewOf(s *scope) *scopeView {
	p := b.picker.Load()
	if p == nil {
		return nil
	}
	if s.route == "" {
		return &p.service
	}
	v := p.routes[s.route]
	if v == nil || v.scope != s {
		return nil
	}
	return v
}

func (b *Balancer) tell(ev BreakerEvent) {
	if b.opts.OnBreaker != nil {
		b.opts.OnBreaker(ev)
	}
}
