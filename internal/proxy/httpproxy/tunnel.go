package httpproxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/tcp"
)

// tunnel carries a CONNECT request as bytes: it sends the request itself to
// where the Upstream dials, then copies both ways. The upstream's answer
// (200 or an error) reaches the client unchanged.
func (f *forwarder) tunnel(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 1 {
		// TODO: HTTP/2 CONNECT (RFC 8441 extended or plain) needs a stream
		// tunnel; a client using it gets 501 until someone needs it.
		http.Error(w, "CONNECT over HTTP/2 is not supported", http.StatusNotImplemented)
		return
	}
	upstream, err := f.upstream.DialTunnel(r.Context(), r)
	if err != nil {
		f.proxy.ErrorHandler(w, r, err)
		return
	}
	defer upstream.Close()
	client, buffered, err := http.NewResponseController(w).Hijack()
	if err != nil {
		f.log.Info("CONNECT: hijack failed", "err", err)
		http.Error(w, "cannot tunnel on this connection", http.StatusInternalServerError)
		return
	}
	defer client.Close()
	if ri := RequestInfoFrom(r.Context()); ri != nil {
		ri.Upgraded = true
	}
	if err := r.Write(upstream); err != nil {
		f.log.Info("CONNECT: writing request upstream", "err", err)
		return
	}
	down := &bufferedConn{Conn: client, r: buffered.Reader}
	// Not the request's context: it ends when the client half-closes (the
	// server's reader, which buffered reads go through, sees EOF). The
	// tunnel lives until either side closes it or the server's shutdown
	// grace ends.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	if sc := serverContext(r.Context()); sc != nil {
		defer context.AfterFunc(sc, cancel)()
	}
	var opts []tcp.Option
	if f.idleTimeout > 0 {
		opts = append(opts, tcp.WithIdleTimeout(f.idleTimeout))
	}
	if _, err := tcp.Forward(ctx, down, upstream, nil, opts...); err != nil {
		f.log.Debug("CONNECT tunnel ended", "err", err)
	}
}

// upgraded is the reverse proxy's ModifyResponse. On a 101 answer it notes
// the upgrade (the reverse proxy writes the answer on the hijacked
// connection, past the metrics layer's writer) and puts the upstream side of
// the tunnel under the idle timeout: every byte of an upgraded connection,
// either way, passes through it.
func (f *forwarder) upgraded(resp *http.Response) error {
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil
	}
	if ri := RequestInfoFrom(resp.Request.Context()); ri != nil {
		ri.Upgraded = true
	}
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok && f.idleTimeout > 0 {
		resp.Body = closeWhenIdle(rwc, f.idleTimeout)
	}
	return nil
}

// idleCloser closes a connection when no byte has been read from or
// written to it for its timeout. A write that blocks that long counts as
// no movement.
type idleCloser struct {
	io.ReadWriteCloser
	timeout time.Duration
	last    atomic.Int64 // unix nanoseconds of the last byte moved

	mu     sync.Mutex
	timer  *time.Timer
	closed bool
}

func closeWhenIdle(rwc io.ReadWriteCloser, timeout time.Duration) *idleCloser {
	c := &idleCloser{ReadWriteCloser: rwc, timeout: timeout}
	c.touch()
	c.mu.Lock()
	c.timer = time.AfterFunc(timeout, c.check)
	c.mu.Unlock()
	return c
}

func (c *idleCloser) touch() { c.last.Store(time.Now().UnixNano()) }

// check closes the connection if it has been idle for the timeout, else
// looks again when it would be.
func (c *idleCloser) check() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	idle := time.Since(time.Unix(0, c.last.Load()))
	if idle < c.timeout {
		c.timer.Reset(c.timeout - idle)
		return
	}
	c.closed = true
	c.ReadWriteCloser.Close()
}

func (c *idleCloser) Read(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Read(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *idleCloser) Write(p []byte) (int, error) {
	n, err := c.ReadWriteCloser.Write(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *idleCloser) Close() error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.timer.Stop()
	c.mu.Unlock()
	if already {
		return nil
	}
	return c.ReadWriteCloser.Close()
}

// bufferedConn reads what the HTTP server had already buffered before
// reading on from the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite lets tcp.Forward half-close the client side.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

var _ io.Reader = (*bufferedConn)(nil)
