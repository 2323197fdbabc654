package proxy

import (
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a connection is refused, the reason label of tcp_refused_total.
const (
	refusedMaxConnections          = "max_connections"
	refusedMaxConnectionsPerSource = "max_connections_per_source"
)

// connLimiter bounds the connections one listener holds at once: all of
// them, and those from any one source address. Its map has an entry per
// source with a connection open, so it never outgrows the listener's cap.
type connLimiter struct {
	max          int
	maxPerSource int // 0: no per-source cap

	mu       sync.Mutex
	open     int
	bySource map[netip.Addr]int
}

func newConnLimiter(max, maxPerSource int) *connLimiter {
	return &connLimiter{max: max, maxPerSource: maxPerSource, bySource: map[netip.Addr]int{}}
}

// acquire takes a place for a connection from src. It returns "" when the
// connection may stay (release it when it closes), else the reason it must
// be refused.
func (l *connLimiter) acquire(src netip.Addr) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.max {
		return refusedMaxConnections
	}
	if l.maxPerSource > 0 {
		if l.bySource[src] >= l.maxPerSource {
			return refusedMaxConnectionsPerSource
		}
		l.bySource[src]++
	}
	l.open++
	return ""
}

// release gives back the place of a connection from src that acquire let
// in.
func (l *connLimiter) release(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.maxPerSource > 0 {
		if n := l.bySource[src] - 1; n > 0 {
			l.bySource[src] = n
		} else {
			delete(l.bySource, src)
		}
	}
}

// refusedCounter is tcp_refused_total: connections closed at accept because
// a cap was reached, by direction and reason. Every series exists from the
// start, at zero, so an alert on its rate needs no special case.
func refusedCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcp_refused_total",
		Help: "TCP connections closed at accept because a connection cap was reached.",
	}, []string{"direction", "reason"})
	if err := reg.Register(c); err != nil {
		return nil, err
	}
	c.WithLabelValues("outbound", refusedMaxConnections)
	c.WithLabelValues("inbound", refusedMaxConnections)
	c.WithLabelValues("inbound", refusedMaxConnectionsPerSource)
	return c, nil
}
