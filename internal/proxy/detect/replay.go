package detect

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// replayConn is a net.Conn whose reads first return the bytes Detect
// consumed, then read on from the connection.
type replayConn struct {
	net.Conn
	drained atomic.Bool // fast path once pending is empty
	mu      sync.Mutex
	pending []byte
}

func newReplayConn(conn net.Conn, pending []byte) *replayConn {
	c := &replayConn{Conn: conn, pending: pending}
	c.drained.Store(len(pending) == 0)
	return c
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.drained.Load() {
		return c.Conn.Read(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return c.Conn.Read(p)
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		c.pending = nil // let the detection buffer go
		c.drained.Store(true)
	}
	return n, nil
}

// WriteTo replays the pending bytes, then copies the rest of the connection
// with io.Copy, which keeps the kernel's splice path between TCP sockets.
func (c *replayConn) WriteTo(w io.Writer) (int64, error) {
	c.mu.Lock()
	pending := c.pending
	c.pending = nil
	c.drained.Store(true)
	c.mu.Unlock()
	n, err := w.Write(pending)
	if err != nil {
		return int64(n), err
	}
	m, err := io.Copy(w, c.Conn)
	return int64(n) + m, err
}

// CloseWrite half-closes the connection, so that Detect's result still
// supports proxying half-closed TCP streams.
func (c *replayConn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return fmt.Errorf("half-closing %T: %w", c.Conn, errors.ErrUnsupported)
}
