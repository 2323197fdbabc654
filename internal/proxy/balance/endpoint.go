package balance

import (
	"sync/atomic"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
)

// endpointState is what the balancer learns about one address. It is shared
// by every picker snapshot that contains the address, and by the Handles
// picked from it, so an Update that keeps the address keeps its history.
// The in-flight count is the endpoint's load, whoever sent it; health is
// the Service-wide scope's view (a route with its own breaker keeps its
// own, see scope).
type endpointState struct {
	inFlight atomic.Int64
	health   *endpointHealth
}

func newEndpointState(prior float64, now int64) *endpointState {
	return &endpointState{health: newEndpointHealth(prior, now)}
}

// entry is one endpoint in a picker snapshot.
type entry struct {
	endpoint discovery.Endpoint
	weight   float64 // Endpoint.Weight, 0 read as 1
	state    *endpointState
}

func newEntry(ep discovery.Endpoint, state *endpointState) entry {
	return entry{endpoint: ep, weight: float64(max(ep.Weight, 1)), state: state}
}

// cost is what P2C compares: the scope's RTT estimate of the endpoint ×
// (in-flight + 1) ÷ weight.
//
// An endpoint that has never answered in the scope and has nothing in
// flight costs 0, so a new endpoint gets one request at once; until that
// request answers it is judged by the DefaultRTT prior, so it is not
// flooded.
func (e *entry) cost(h *endpointHealth) float64 {
	rtt := h.rtt.current.Load()
	inFlight := e.state.inFlight.Load()
	if !rtt.measured && inFlight == 0 {
		return 0
	}
	return rtt.fadedAt(h.passedOver.Load()) * float64(inFlight+1) / e.weight
}
