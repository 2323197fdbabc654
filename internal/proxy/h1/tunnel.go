package h1

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// tunnelBody is the body of an upgrade or CONNECT request. Its reads wait
// until the engine has the Handler's answer: after a 101 (or a 2xx to
// CONNECT) it yields the client's raw bytes, else it is empty.
type tunnelBody struct {
	ctx     context.Context
	decided chan struct{}
	r       io.Reader     // nil: no tunnel
	moved   *atomic.Int64 // when a byte last moved, for the idle timeout
	doneMu  sync.Once
	done    chan struct{} // closed when the client's side ended or was closed
}

func newTunnelBody(ctx context.Context) *tunnelBody {
	return &tunnelBody{ctx: ctx, decided: make(chan struct{}), done: make(chan struct{})}
}

// decide opens the tunnel onto r, or (r nil) ends the body empty.
func (t *tunnelBody) decide(r io.Reader, moved *atomic.Int64) {
	t.r, t.moved = r, moved
	close(t.decided)
	if r == nil {
		t.finish()
	}
}

func (t *tunnelBody) finish() { t.doneMu.Do(func() { close(t.done) }) }

func (t *tunnelBody) Read(p []byte) (int, error) {
	select {
	case <-t.decided:
	case <-t.ctx.Done():
		return 0, t.ctx.Err()
	}
	if t.r == nil {
		return 0, io.EOF
	}
	n, err := t.r.Read(p)
	if n > 0 {
		t.moved.Store(nanotime())
	}
	if err != nil {
		t.finish()
	}
	return n, err
}

func (t *tunnelBody) Trailers() stack.Header { return nil }

func (t *tunnelBody) Close() error {
	t.finish()
	return nil
}

// tunnel writes the head of a 101 or a 2xx answer to CONNECT and then
// carries bytes both ways: the client's through the request body (read by
// the Handler's side), the answer's body to the client. Each direction's
// end half-closes the other side; the tunnel ends when both have, or when
// the request's context ends.
func (c *serverConn) tunnel(ctx context.Context, fr framing, resp *stack.Response, tb *tunnelBody) {
	defer func() { _ = resp.Body.Close() }()
	bp := getBuf()
	defer putBuf(bp)
	b := appendStatusLine((*bp)[:0], resp.Status)
	b = appendFields(b, resp.Header, fr.upgrade)
	if fr.upgrade {
		b = append(b, "Connection: Upgrade\r\n"...)
	}
	b = append(b, '\r', '\n')
	*bp = b[:0]
	if c.write(b) != nil {
		tb.decide(nil, nil)
		return
	}
	_ = c.conn.SetDeadline(time.Time{})
	var moved atomic.Int64
	moved.Store(nanotime())
	stopIdle := c.closeWhenIdle(&moved, resp.Body)
	defer stopIdle()
	tb.decide(c.br, &moved)
	buf := (*bp)[:cap(*bp)]
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			moved.Store(nanotime())
			if _, werr := c.conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err == io.EOF {
			closeWrite(c.conn)
			break
		}
		if err != nil {
			return
		}
	}
	select {
	case <-tb.done:
	case <-ctx.Done():
	}
}

// closeWhenIdle closes both sides of a tunnel once no byte has moved
// either way for the tunnel idle timeout; it returns the function that
// stops watching.
func (c *serverConn) closeWhenIdle(moved *atomic.Int64, upstream stack.Body) (stop func()) {
	idle := c.srv.cfg.TunnelIdleTimeout
	var timer *time.Timer
	var mu sync.Mutex
	stopped := false
	check := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if left := idle - time.Duration(nanotime()-moved.Load()); left > 0 {
			timer.Reset(left)
			return
		}
		c.srv.log.Debug("HTTP/1 tunnel idle, closing", "client", c.ci.Client, "idle", idle)
		_ = c.conn.Close()
		_ = upstream.Close()
	}
	mu.Lock()
	timer = time.AfterFunc(idle, check)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		timer.Stop()
	}
}

// nanotime is a monotonic clock reading in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }

var epoch = time.Now()

// closeWrite half-closes c when it can, else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
