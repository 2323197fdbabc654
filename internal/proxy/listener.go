package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/detect"
	"github.com/skeinmesh/skein/internal/proxy/httpproxy"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/origdst"
	"github.com/skeinmesh/skein/internal/proxy/tcp"
)

// opaqueDialer opens the upstream side of an opaque connection.
type opaqueDialer func(ctx context.Context, ci *httpproxy.ConnInfo) (net.Conn, error)

// listener accepts one direction's redirected connections and dispatches
// each by protocol.
type listener struct {
	direction     string
	ln            net.Listener
	transparent   bool // original destination is the local address
	http          *httpproxy.Server
	dialOpaque    opaqueDialer
	opaquePorts   []uint16
	detectTimeout time.Duration
	metrics       *metrics.Registry
	log           *slog.Logger

	conns sync.WaitGroup // opaque connections in flight
}

// serve accepts until the listener is closed. Connection handlers run under
// connCtx, which the owner cancels once the shutdown grace period is over.
func (l *listener) serve(connCtx context.Context) {
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep going.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed", "direction", l.direction, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		l.conns.Add(1)
		go func() {
			defer l.conns.Done()
			l.handle(connCtx, c)
		}()
	}
}

// handle finds where c was going, detects its protocol and hands it on.
func (l *listener) handle(ctx context.Context, c net.Conn) {
	ci, err := l.connInfo(c)
	if err != nil {
		l.log.Info("refusing connection", "direction", l.direction, "client", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	mc := l.metrics.TCPOpen(metrics.TCPLabels{
		Direction:  l.direction,
		TargetAddr: ci.OrigDst.String(),
		TLS:        "no_identity",
	})
	conn := &meteredConn{Conn: c, m: mc}

	if slices.Contains(l.opaquePorts, ci.OrigDst.Port()) {
		l.forwardOpaque(ctx, conn, ci)
		return
	}
	res, replay, err := detect.Detect(conn, l.detectTimeout)
	if err != nil {
		l.log.Info("closing connection: protocol detection failed", "direction", l.direction, "client", ci.Client, "err", err)
		conn.closeWith("detect")
		return
	}
	switch res.Protocol {
	case detect.HTTP1, detect.HTTP2:
		// The HTTP server owns the connection from here on.
		if err := l.http.ServeConn(&replayConn{Conn: replay, metered: conn}, ci); err != nil {
			conn.Close()
		}
	default:
		l.forwardOpaque(ctx, &replayConn{Conn: replay, metered: conn}, ci)
	}
}

func (l *listener) connInfo(c net.Conn) (*httpproxy.ConnInfo, error) {
	ci := &httpproxy.ConnInfo{Direction: l.direction}
	if ra, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ci.Client = ra.AddrPort()
	}
	if l.transparent {
		ci.OrigDst = origdst.LocalDst(c)
	} else {
		tc, ok := c.(*net.TCPConn)
		if !ok {
			return nil, errors.New("not a TCP connection")
		}
		dst, err := origdst.OriginalDst(tc)
		if err != nil {
			return nil, err
		}
		ci.OrigDst = dst
	}
	ci.OrigDst = netip.AddrPortFrom(ci.OrigDst.Addr().Unmap(), ci.OrigDst.Port())
	// A connection made straight to the proxy's own port has nowhere to go
	// but back to the proxy.
	if la, ok := l.ln.Addr().(*net.TCPAddr); ok && int(ci.OrigDst.Port()) == la.Port &&
		(la.IP.IsUnspecified() || la.AddrPort().Addr().Unmap() == ci.OrigDst.Addr()) {
		return nil, errors.New("connection to the proxy itself, not redirected")
	}
	return ci, nil
}

// forwardOpaque copies bytes between the client and the upstream.
func (l *listener) forwardOpaque(ctx context.Context, down net.Conn, ci *httpproxy.ConnInfo) {
	defer down.Close()
	up, err := l.dialOpaque(ctx, ci)
	if err != nil {
		l.log.Info("opaque connection: connect failed", "direction", l.direction, "dst", ci.OrigDst, "err", err)
		return
	}
	defer up.Close()
	if _, err := tcp.Forward(ctx, down, up, nil); err != nil {
		l.log.Debug("opaque connection ended", "direction", l.direction, "dst", ci.OrigDst, "err", err)
	}
}

// meteredConn counts a connection's bytes and its close in the TCP metrics.
type meteredConn struct {
	net.Conn
	m      *metrics.Conn
	closed atomic.Bool
}

func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.m.AddRead(n)
	return n, err
}

func (c *meteredConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.m.AddWrite(n)
	return n, err
}

func (c *meteredConn) Close() error { return c.closeWith("") }

func (c *meteredConn) closeWith(reason string) error {
	if c.closed.CompareAndSwap(false, true) {
		c.m.Close(reason)
	}
	return c.Conn.Close()
}

func (c *meteredConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// replayConn reads through the detector's replaying conn but writes,
// half-closes and closes through the metered one.
type replayConn struct {
	net.Conn // reads replay the detected bytes first
	metered  *meteredConn
}

func (c *replayConn) Write(p []byte) (int, error) { return c.metered.Write(p) }
func (c *replayConn) Close() error                { return c.metered.Close() }
func (c *replayConn) CloseWrite() error           { return c.metered.CloseWrite() }
