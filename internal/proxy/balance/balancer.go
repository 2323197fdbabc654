package balance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
)

// ErrNoEndpoints is returned by Pick when the destination has no endpoints.
var ErrNoEndpoints = errors.New("balance: no endpoints")

// ErrAllEjected is returned by Pick when every endpoint of the request's
// scope is ejected by its breaker (and none is half-open and free to take
// a probe). With the default MaxEjectedPercent (50) a breaker never ejects
// every endpoint; this happens when a policy allows 100%, or when the
// endpoints that were not ejected left the set.
var ErrAllEjected = errors.New("balance: all endpoints ejected")

// Balancer balances the requests to one destination over its endpoints.
// Update, SetBreaker and SetRouteBreakers (slow path, locks) swap in a new
// picker snapshot; Pick (hot path) reads the snapshot and per-endpoint
// atomics only.
type Balancer struct {
	opts   Options
	epoch  time.Time
	window float64 // DecayWindow in nanoseconds

	picker atomic.Pointer[picker] // nil until the first Update
	ready  chan struct{}          // closed by the first Update

	mu      sync.Mutex                        // serialises the slow path
	states  map[netip.AddrPort]*endpointState // by address; guarded by mu
	service *scope
	routes  map[string]*routeScope // by key; guarded by mu
	eps     []discovery.Endpoint   // the current set, deduplicated; guarded by mu
}

// routeScope is a route's own scope and its health of each endpoint by
// address; entries go with the endpoint (Update) or the route
// (SetRouteBreakers).
type routeScope struct {
	*scope
	health map[netip.AddrPort]*endpointHealth
}

// New returns a Balancer with no endpoint set yet: Pick waits for the first
// Update. Invalid options are replaced by defaults (see Options.Validate).
func New(opts Options) *Balancer {
	opts = opts.withDefaults()
	return &Balancer{
		opts:    opts,
		epoch:   opts.Now(),
		window:  float64(opts.DecayWindow),
		ready:   make(chan struct{}),
		states:  map[netip.AddrPort]*endpointState{},
		service: newScope("", "", opts.Breaker),
		routes:  map[string]*routeScope{},
	}
}

// now is the time in nanoseconds since the Balancer was made.
func (b *Balancer) now() int64 {
	return int64(b.opts.Now().Sub(b.epoch))
}

// Update replaces the endpoint set. New endpoints can be picked at once;
// endpoints whose address is kept keep their RTT estimates, in-flight count
// and breakers (Service-wide and per route); removed ones get no new picks,
// while requests already sent to them finish normally, and their state is
// forgotten. Of duplicate addresses the first wins. The balancer keeps the
// Endpoint values: callers must not modify them after.
func (b *Balancer) Update(eps []discovery.Endpoint) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	states := make(map[netip.AddrPort]*endpointState, len(eps))
	kept := make([]discovery.Endpoint, 0, len(eps))
	for _, ep := range eps {
		if _, dup := states[ep.Addr]; dup {
			continue
		}
		state := b.states[ep.Addr]
		if state == nil {
			state = newEndpointState(float64(b.opts.DefaultRTT), now)
		}
		states[ep.Addr] = state
		kept = append(kept, ep)
	}
	b.states = states
	b.eps = kept
	for _, rs := range b.routes {
		for addr := range rs.health {
			if states[addr] == nil {
				delete(rs.health, addr)
			}
		}
	}
	b.publish(now)
}

// publish builds a picker from the current set and scopes and swaps it
// in; the caller holds mu.
func (b *Balancer) publish(now int64) {
	next := &picker{
		entries: make([]entry, 0, len(b.eps)),
		service: scopeView{scope: b.service, health: make([]*endpointHealth, 0, len(b.eps))},
	}
	for _, ep := range b.eps {
		state := b.states[ep.Addr]
		next.entries = append(next.entries, newEntry(ep, state))
		next.service.health = append(next.service.health, state.health)
	}
	if len(b.routes) > 0 {
		next.routes = make(map[string]*scopeView, len(b.routes))
		for key, rs := range b.routes {
			view := &scopeView{scope: rs.scope, health: make([]*endpointHealth, 0, len(b.eps))}
			for _, ep := range b.eps {
				h := rs.health[ep.Addr]
				if h == nil {
					h = newEndpointHealth(float64(b.opts.DefaultRTT), now)
					rs.health[ep.Addr] = h
				}
				view.health = append(view.health, h)
			}
			next.routes[key] = view
		}
	}
	if b.picker.Swap(next) == nil {
		close(b.ready)
	}
}

// SetBreaker changes the Service-wide breaker's policy. The endpoints keep
// their state (failure counts, ejections under way, estimates).
func (b *Balancer) SetBreaker(p BreakerPolicy) {
	p = p.withDefaults()
	b.service.policy.Store(&p)
}

// SetRouteBreakers sets the route scopes that owner (a policy) defines:
// routes maps a route scope's key, unique across owners, to its policy.
// A route scope keeps its endpoints' state when its policy changes; the
// scopes owner set before and no longer lists are dropped with their
// state. A request picked with PickRoute(key) is judged by that scope
// alone.
func (b *Balancer) SetRouteBreakers(owner string, routes map[string]BreakerPolicy) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for key, rs := range b.routes {
		if _, ok := routes[key]; !ok && rs.owner == owner {
			delete(b.routes, key)
		}
	}
	for key, p := range routes {
		p = p.withDefaults()
		if rs := b.routes[key]; rs != nil && rs.owner == owner {
			rs.policy.Store(&p)
			continue
		}
		b.routes[key] = &routeScope{scope: newScope(key, owner, p), health: map[netip.AddrPort]*endpointHealth{}}
	}
	if b.picker.Load() != nil {
		b.publish(b.now())
	}
}

// Pick chooses an endpoint for one request of the Service-wide scope; see
// PickRoute.
func (b *Balancer) Pick(ctx context.Context, avoid ...netip.AddrPort) (*Handle, error) {
	return b.PickRoute(ctx, "", avoid...)
}

// PickRoute chooses an endpoint for one request of the route scope route
// ("" or a key SetRouteBreakers does not know: the Service-wide scope). It
// waits for the first Update or for ctx to be done; it returns
// ErrNoEndpoints when the set is empty and ErrAllEjected when the scope's
// breakers eject every endpoint. avoid names endpoints the caller would
// rather not use (say, one it just failed to connect to); if every
// available endpoint is avoided, Pick picks among them anyway. The caller
// must call Done on the returned Handle.
func (b *Balancer) PickRoute(ctx context.Context, route string, avoid ...netip.AddrPort) (*Handle, error) {
	p := b.picker.Load()
	if p == nil {
		select {
		case <-b.ready:
			p = b.picker.Load()
		case <-ctx.Done():
			return nil, fmt.Errorf("balance: waiting for the first endpoint set: %w", ctx.Err())
		}
	}
	if len(p.entries) == 0 {
		return nil, ErrNoEndpoints
	}
	view := &p.service
	if route != "" {
		if v := p.routes[route]; v != nil {
			view = v
		}
	}
	now := b.now()
	i, probe, ok := p.pick(view, now, avoid, b.opts.Rand)
	if !ok {
		return nil, ErrAllEjected
	}
	e := &p.entries[i]
	e.state.inFlight.Add(1)
	h := &Handle{balancer: b, entry: e, health: view.health[i], scope: view.scope, probe: probe}
	h.start.Store(now)
	return h, nil
}

// EndpointStatus is one endpoint's state as the balancer sees it, for
// debugging and metrics.
type EndpointStatus struct {
	Addr   netip.AddrPort
	Weight uint32
	// RTT is the current peak-EWMA estimate, faded by the comparisons the
	// endpoint lost since (the DefaultRTT prior until it first answers).
	RTT time.Duration
	// Cost is what power of two choices compares: RTT × (InFlight+1) ÷
	// weight (0 for a new endpoint that has nothing in flight).
	Cost                time.Duration
	InFlight            int64
	ConsecutiveFailures int64
	// Ejected is true while the circuit breaker is open or half-open;
	// Probing while the half-open probe request is in flight.
	Ejected bool
	Probing bool
}

// Snapshot returns the status of the current endpoints in the Service-wide
// scope, in Update's order.
func (b *Balancer) Snapshot() []EndpointStatus {
	return b.SnapshotRoute("")
}

// SnapshotRoute is Snapshot in the scope of route (the Service-wide one
// for "" or an unknown key).
func (b *Balancer) SnapshotRoute(route string) []EndpointStatus {
	p := b.picker.Load()
	if p == nil {
		return nil
	}
	view := &p.service
	if v := p.routes[route]; route != "" && v != nil {
		view = v
	}
	now := b.now()
	out := make([]EndpointStatus, 0, len(p.entries))
	for i := range p.entries {
		e, h := &p.entries[i], view.health[i]
		out = append(out, EndpointStatus{
			Addr:                e.endpoint.Addr,
			Weight:              e.endpoint.Weight,
			RTT:                 time.Duration(h.rtt.current.Load().fadedAt(h.passedOver.Load())),
			Cost:                time.Duration(e.cost(h)),
			InFlight:            e.state.inFlight.Load(),
			ConsecutiveFailures: h.breaker.consecutiveFailures.Load(),
			Ejected:             h.breaker.state(now) != breakerClosed,
			Probing:             h.breaker.probing.Load(),
		})
	}
	return out
}
