package outbound

import (
	"net/netip"
	"sync"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
)

// Defaults of the meshed-address memory.
const (
	// meshedTTL is how long an address stays meshed after discovery last
	// reported it with an identity.
	meshedTTL = 24 * time.Hour
	// meshedMax bounds the memory: about 4 MB when full.
	meshedMax = 65536
)

// meshedAddrs remembers the endpoint addresses discovery reported with an
// identity, so that a connection to one of them is never sent in plaintext
// when discovery has no answer for it now (its destination was dropped
// while idle, the controller is away, or it says it does not know it). Only
// discovery adds to it, never a client; it is bounded in time and size.
type meshedAddrs struct {
	ttl time.Duration
	max int

	mu       sync.Mutex
	lastSeen map[netip.AddrPort]time.Time
}

func newMeshedAddrs(ttl time.Duration, max int) *meshedAddrs {
	return &meshedAddrs{ttl: ttl, max: max, lastSeen: make(map[netip.AddrPort]time.Time)}
}

// note records the meshed endpoints of one discovery answer.
func (m *meshedAddrs) note(eps []discovery.Endpoint, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range eps {
		if e.Identity == "" {
			continue
		}
		if _, ok := m.lastSeen[e.Addr]; !ok && len(m.lastSeen) >= m.max {
			m.evict(now)
		}
		m.lastSeen[e.Addr] = now
	}
}

// evict drops the expired entries and, if that is not enough, an eighth of
// the rest (Go's map order picks which), so that a full memory costs one
// sweep per max/8 new addresses rather than one per address. The caller
// holds m.mu.
func (m *meshedAddrs) evict(now time.Time) {
	for a, t := range m.lastSeen {
		if now.Sub(t) > m.ttl {
			delete(m.lastSeen, a)
		}
	}
	drop := len(m.lastSeen) - m.max + max(m.max/8, 1)
	for a := range m.lastSeen {
		if drop <= 0 {
			break
		}
		delete(m.lastSeen, a)
		drop--
	}
}

// contains reports whether addr was reported meshed within the TTL.
func (m *meshedAddrs) contains(addr netip.AddrPort, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.lastSeen[addr]
	return ok && now.Sub(t) <= m.ttl
}

func (m *meshedAddrs) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.lastSeen)
}
