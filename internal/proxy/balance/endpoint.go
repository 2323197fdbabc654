package balance

import (
	"sync/atomic"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
)

// endpointState is what the balancer learns about one address. It is shared
// by every picker snapshot that contains the address, and by the Handles
// picked from it, so an Update that keeps the address keeps its history.
type endpointState struct {
	rtt      *rttEstimate
	inFlight atomic.Int64
	// passedOver counts the P2C comparisons the endpoint lost while it had
	// nothing in flight; its estimate fades with them (rttSample.fadedAt).
	passedOver atomic.Int64
	breaker    breaker
}

func newEndpointState(prior float64, now int64) *endpointState {
	return &endpointState{rtt: newRTTEstimate(prior, now)}
}

// cost is what P2C compares: RTT estimate × (in-flight + 1) ÷ weight.
//
// An endpoint that has never answered and has nothing in flight costs 0, so
// a new endpoint gets one request at once; until that request answers it
// is judged by the DefaultRTT prior, so it is not flooded.
func (s *endpointState) cost(weight float64) float64 {
	rtt := s.rtt.current.Load()
	inFlight := s.inFlight.Load()
	if !rtt.measured && inFlight == 0 {
		return 0
	}
	return rtt.fadedAt(s.passedOver.Load()) * float64(inFlight+1) / weight
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

func (e *entry) cost() float64 {
	return e.state.cost(e.weight)
}
