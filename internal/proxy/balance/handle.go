package balance

import (
	"sync/atomic"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
)

// Handle is one picked request in flight. Call Responded when the response
// headers arrive (optional) and Done exactly once when the request ends.
// A Handle keeps working after its endpoint is removed by Update.
type Handle struct {
	balancer *Balancer
	entry    *entry
	health   *endpointHealth // the scope's view of the endpoint
	scope    *scope
	// start is when the latency sample starts: Pick time, or when Sending
	// said the request went out; nanoseconds since the Balancer's epoch.
	start atomic.Int64
	probe bool // the half-open breaker's single probe

	sampled atomic.Bool // the latency sample has been recorded
	done    atomic.Bool

	// Storage for the RTT states this Handle publishes (see
	// rttEstimate.observe): the latency sample and a failure penalty.
	latencySlot, penaltySlot rttSample
}

// Endpoint is the endpoint picked, as it was at Pick time.
func (h *Handle) Endpoint() discovery.Endpoint {
	return h.entry.endpoint
}

// Sending marks the moment the request goes out on a connection: the
// latency sample then measures the endpoint's answer, not how long it took
// to connect to it (a new connection's TCP and TLS handshakes would
// otherwise make the endpoint look slow and cost it dozens of calls). Calls
// after Responded do nothing.
func (h *Handle) Sending() {
	if !h.sampled.Load() {
		h.start.Store(h.balancer.now())
	}
}

// Responded records the latency sample (time since Pick) when the response
// headers arrive, so a long stream does not hold its sample back until it
// ends. Calls after the first, or after Done, do nothing.
func (h *Handle) Responded() {
	if !h.sampled.CompareAndSwap(false, true) {
		return
	}
	now := h.balancer.now()
	h.observe(float64(now-h.start.Load()), false, now, &h.latencySlot)
}

// Done ends the request: the endpoint's in-flight count drops, the latency
// sample is recorded if Responded was not called, and the outcome feeds the
// failure penalty and the circuit breaker. A failed request counts as a
// sample of at least FailurePenalty, so an endpoint that fails fast looks
// slow. All of it goes to the scope the request was picked in (see
// PickRoute). Calls after the first do nothing.
func (h *Handle) Done(failed bool) {
	if !h.done.CompareAndSwap(false, true) {
		return
	}
	b := h.balancer
	now := b.now()
	latency := float64(now - h.start.Load())
	penalty := float64(b.opts.FailurePenalty)
	switch {
	case h.sampled.CompareAndSwap(false, true):
		if failed {
			latency = max(latency, penalty)
		}
		h.observe(latency, failed, now, &h.latencySlot)
	case failed:
		h.observe(max(latency, penalty), true, now, &h.penaltySlot)
	}
	h.entry.state.inFlight.Add(-1)
	b.outcome(h.scope, h.health, h.entry.endpoint.Addr, h.probe, failed, now)
}

func (h *Handle) observe(rtt float64, failed bool, now int64, slot *rttSample) {
	hl := h.health
	hl.rtt.observe(rtt, failed, now, hl.passedOver.Load(), h.balancer.window, slot)
}
