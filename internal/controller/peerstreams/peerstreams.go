// Package peerstreams caps how many streams one client address may hold
// open on the controller's streaming APIs (destination, policy), so that no
// client can make the controller keep unbounded goroutines, watches and
// buffers.
package peerstreams

import (
	"sync"
)

// DefaultMax is how many streams of one API one client address may hold
// open at once unless configured otherwise. A proxy holds one stream per
// destination its workload calls; a thousand is far more than a workload
// talks to, and bounds what one client can make the controller keep (each
// stream is a goroutine, a model watch and its buffers).
const DefaultMax = 1000

// Limit counts open streams per client address. Entries exist only while a
// stream is open, so the map is bounded by the open connections, each of
// which already passed the mesh TLS handshake.
type Limit struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

// New returns a Limit of max streams per address; max <= 0 means
// DefaultMax.
func New(max int) *Limit {
	if max <= 0 {
		max = DefaultMax
	}
	return &Limit{max: max, open: map[string]int{}}
}

// Max is the most streams one address may hold.
func (p *Limit) Max() int { return p.max }

// Acquire takes one of the peer's streams, or reports false when the peer
// already holds Max. release gives it back.
func (p *Limit) Acquire(key string) (release func(), ok bool) {
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
