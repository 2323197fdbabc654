package destination

import (
	"sync"
)

// DefaultMaxStreamsPerPeer is how many destination streams one client
// address may hold open at once unless configured otherwise. A proxy holds
// one stream per destination its workload calls; a thousand is far more
// than a workload talks to, and bounds what one client can make the
// controller keep (each stream is a goroutine, a model watch and its
// buffers).
const DefaultMaxStreamsPerPeer = 1000

// peerStreams counts open streams per client address. Entries exist only
// while a stream is open, so the map is bounded by the open connections,
// each of which already passed the mesh TLS handshake.
type peerStreams struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

func newPeerStreams(max int) *peerStreams {
	if max <= 0 {
		max = DefaultMaxStreamsPerPeer
	}
	return &peerStreams{max: max, open: map[string]int{}}
}

// acquire takes one of the peer's streams, or reports false when the peer
// already holds max. release gives it back.
func (p *peerStreams) acquire(key string) (release func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open[key] >= p.max {
		return nil, false
	}
	p.open[key]++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.open[key]--; p.open[key] == 0 {
			delete(p.open, key)
		}
	}, true
}
