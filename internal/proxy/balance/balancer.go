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

// Balancer balances the requests to one destination over its endpoints.
// Update (slow path, locks) swaps in a new picker snapshot; Pick (hot path)
// reads the snapshot and per-endpoint atomics only.
type Balancer struct {
	opts   Options
	epoch  time.Time
	window float64 // DecayWindow in nanoseconds

	picker atomic.Pointer[picker] // nil until the first Update
	ready  chan struct{}          // closed by the first Update

	mu     sync.Mutex                        // serialises Update
	states map[netip.AddrPort]*endpointState // by address; guarded by mu
}

// New returns a Balancer with no endpoint set yet: Pick waits for the first
// Update. Invalid options are replaced by defaults (see Options.Validate).
func New(opts Options) *Balancer {
	opts = opts.withDefaults()
	return &Balancer{
		opts:   opts,
		epoch:  opts.Now(),
		window: float64(opts.DecayWindow),
		ready:  make(chan struct{}),
		states: map[netip.AddrPort]*endpointState{},
	}
}

// now is the time in nanoseconds since the Balancer was made.
func (b *Balancer) now() int64 {
	return int64(b.opts.Now().Sub(b.epoch))
}

// Update replaces the endpoint set. New endpoints can be picked at once;
// endpoints whose address is kept keep their RTT estimate, in-flight count
// and breaker; removed ones get no new picks, while requests already sent
// to them finish normally. Of duplicate addresses the first wins. The
// balancer keeps the Endpoint values: callers must not modify them after.
func (b *Balancer) Update(eps []discovery.Endpoint) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	next := &picker{entries: make([]entry, 0, len(eps))}
	states := make(map[netip.AddrPort]*endpointState, len(eps))
	for _, ep := range eps {
		if _, dup := states[ep.Addr]; dup {
			continue
		}
		state := b.states[ep.Addr]
		if state == nil {
			state = newEndpointState(float64(b.opts.DefaultRTT), now)
		}
		states[ep.Addr] = state
		next.entries = append(next.entries, newEntry(ep, state))
	}
	b.states = states
	if b.picker.Swap(next) == nil {
		close(b.ready)
	}
}

// Pick chooses an endpoint for one request. It waits for the first Update
// or for ctx to be done; it returns ErrNoEndpoints when the set is empty.
// avoid names endpoints the caller would rather not use (say, one it just
// failed to connect to); if every available endpoint is avoided, Pick picks
// among them anyway. The caller must call Done on the returned Handle.
func (b *Balancer) Pick(ctx context.Context, avoid ...netip.AddrPort) (*Handle, error) {
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
	now := b.now()
	e, probe := p.pick(now, avoid, b.opts.Rand)
	e.state.inFlight.Add(1)
	h := &Handle{balancer: b, entry: e, probe: probe}
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

// Snapshot returns the status of the current endpoints, in Update's order.
func (b *Balancer) Snapshot() []EndpointStatus {
	p := b.picker.Load()
	if p == nil {
		return nil
	}
	now := b.now()
	out := make([]EndpointStatus, 0, len(p.entries))
	for i := range p.entries {
		e := &p.entries[i]
		st := e.state
		out = append(out, EndpointStatus{
			Addr:                e.endpoint.Addr,
			Weight:              e.endpoint.Weight,
			RTT:                 time.Duration(st.rtt.current.Load().fadedAt(st.passedOver.Load())),
			Cost:                time.Duration(e.cost()),
			InFlight:            st.inFlight.Load(),
			ConsecutiveFailures: st.breaker.consecutiveFailures.Load(),
			Ejected:             st.breaker.state(now) != breakerClosed,
			Probing:             st.breaker.probing.Load(),
		})
	}
	return out
}
