package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// tcpSeries are the child metrics of one TCPLabels value, shared by every
// connection with those labels.
type tcpSeries struct {
	reg    *Registry
	values []string

	open      prometheus.Counter
	openNow   prometheus.Gauge
	readBytes prometheus.Counter
	wrote     prometheus.Counter

	closed seriesCache[string, prometheus.Counter] // by errno
}

// Conn records one TCP connection's traffic. It satisfies the tcp package's
// byte counters (AddRead/AddWrite) and is safe for concurrent use.
type Conn struct {
	s      *tcpSeries
	closed atomic.Bool
}

// TCPOpen counts a new connection (tcp_open_total, tcp_open_connections) and
// returns its recorder. Close it exactly when the connection ends.
func (r *Registry) TCPOpen(l TCPLabels) *Conn {
	s := r.tcpSeriesFor(l)
	s.open.Inc()
	s.openNow.Inc()
	return &Conn{s: s}
}

func (r *Registry) tcpSeriesFor(l TCPLabels) *tcpSeries {
	return r.tcpSeries.get(l, func() *tcpSeries {
		values := l.values()
		return &tcpSeries{
			reg:       r,
			values:    values,
			open:      r.tcpOpenTotal.WithLabelValues(values...),
			openNow:   r.tcpOpenConnections.WithLabelValues(values...),
			readBytes: r.tcpReadBytes.WithLabelValues(values...),
			wrote:     r.tcpWriteBytes.WithLabelValues(values...),
		}
	})
}

// AddRead counts n bytes read from the peer (tcp_read_bytes_total).
func (c *Conn) AddRead(n int) {
	if n > 0 {
		c.s.readBytes.Add(float64(n))
	}
}

// AddWrite counts n bytes written to the peer (tcp_write_bytes_total).
func (c *Conn) AddWrite(n int) {
	if n > 0 {
		c.s.wrote.Add(float64(n))
	}
}

// Close counts the connection's end (tcp_close_total with errno, and one
// fewer in tcp_open_connections). errno is empty for a clean close, else a
// short stable name such as "ECONNRESET" or "ETIMEDOUT" — never an error
// message, which would make a new series per message. Only the first call
// counts.
func (c *Conn) Close(errno string) {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	c.s.openNow.Dec()
	c.s.closeCounter(errno).Inc()
}

func (s *tcpSeries) closeCounter(errno string) prometheus.Counter {
	return s.closed.get(errno, func() prometheus.Counter {
		values := append(append(make([]string, 0, len(s.values)+1), s.values...), errno)
		return s.reg.tcpCloseTotal.WithLabelValues(values...)
	})
}
