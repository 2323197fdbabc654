package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinmesh/skein/internal/proxy/authorize"
	"github.com/skeinmesh/skein/internal/proxy/detect"
	"github.com/skeinmesh/skein/internal/proxy/inbound"
	"github.com/skeinmesh/skein/internal/proxy/meshtls"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/origdst"
	"github.com/skeinmesh/skein/internal/proxy/rawio"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/proxy/tcp"
)

// MeshServer gives the server side of mesh connections: the proxy's own
// certificate, and the check of the client's.
type MeshServer interface {
	ServerTLS(nextProtos []string) *tls.Config
}

// opaqueDialer opens the upstream side of an opaque connection.
type opaqueDialer func(ctx context.Context, ci *stack.ConnInfo) (net.Conn, error)

// httpServer serves detected connections of one HTTP version (h1.Server,
// h2.Server): ServeConn returns when the connection ends; DrainConn makes
// the connection served with ci stop taking requests.
type httpServer interface {
	ServeConn(c net.Conn, ci *stack.ConnInfo)
	DrainConn(ci *stack.ConnInfo)
}

// listener accepts one direction's redirected connections and dispatches
// each by protocol.
type listener struct {
	direction     string
	ln            net.Listener
	transparent   bool // original destination is the local address
	http1, http2  httpServer
	dialOpaque    opaqueDialer
	opaquePorts   []uint16
	detectTimeout time.Duration
	// opaqueIdleTimeout closes opaque connections nothing moves on.
	opaqueIdleTimeout time.Duration
	// limits caps the connections held at once; refused counts those
	// closed at accept, by reason (tcp_refused_total).
	limits         *connLimiter
	refused        *prometheus.CounterVec
	lastRefusalLog atomic.Int64 // unix nanoseconds
	metrics        *metrics.Registry
	log            *slog.Logger
	// appPorts, inbound only, are the ports the application listens on;
	// connections to others are counted under target_addr "unknown".
	appPorts *inbound.ListeningPorts
	// mesh terminates mutual TLS from peer proxies; nil without an identity.
	mesh   MeshServer
	peerID func(tls.ConnectionState) (string, error)
	// requireMTLS refuses plaintext from the network on the ports it
	// covers; the zero value requires it nowhere.
	requireMTLS RequireMTLS
	// authorizer, inbound with a controller only, decides opaque
	// connections before they reach the application, and keeps every
	// connection it allowed so that a tightened policy can close it.
	authorizer *authorize.Authorizer

	conns sync.WaitGroup // connection handlers running
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
		src := sourceAddr(c)
		if reason := l.limits.acquire(src); reason != "" {
			l.refuse(c, reason)
			continue
		}
		l.conns.Add(1)
		go func() {
			defer l.conns.Done()
			l.handle(connCtx, c, func() { l.limits.release(src) })
		}()
	}
}

// refuse closes a connection past a cap at once, with a reset so that
// neither side keeps the socket, and counts it.
func (l *listener) refuse(c net.Conn, reason string) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
	l.refused.WithLabelValues(l.direction, reason).Inc()
	// One line every 10 s at most: a flood must not flood the log too.
	now := time.Now().UnixNano()
	if last := l.lastRefusalLog.Load(); now-last >= int64(10*time.Second) && l.lastRefusalLog.CompareAndSwap(last, now) {
		l.log.Warn("refusing connections: cap reached (see tcp_refused_total)", "direction", l.direction,
			"reason", reason, "client", c.RemoteAddr().String())
	}
}

// sourceAddr is the client's IP address, the key of the per-source cap.
func sourceAddr(c net.Conn) netip.Addr {
	if ra, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ra.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// handle finds where c was going, detects its protocol and hands it on.
// The connection is counted in the TCP metrics once it is known who is on
// the other end (after a mesh TLS handshake). release runs once c is
// closed, by whichever part of the proxy owns it by then.
func (l *listener) handle(ctx context.Context, c net.Conn, release func()) {
	conn := &meteredConn{Conn: rawio.Wrap(c), onClose: release}
	ci, err := l.connInfo(c)
	if err != nil {
		l.log.Info("refusing connection", "direction", l.direction, "client", c.RemoteAddr(), "err", err)
		conn.Close()
		return
	}
	if slices.Contains(l.opaquePorts, ci.OrigDst.Port()) {
		l.count(conn, ci)
		if l.mustRefusePlaintext(ci) {
			// A peer's opaque mesh traffic comes to the proxy's own port;
			// on the application's port it can only be plaintext.
			l.refusePlaintext(conn, ci)
			return
		}
		l.forwardOpaque(ctx, conn, conn, ci)
		return
	}
	res, replay, err := detect.Detect(conn, l.detectTimeout)
	rc := &replayConn{Conn: replay, metered: conn}
	if err == nil && ci.ToProxy && (res.Protocol != detect.TLS || !meshtls.IsMesh(res.TLS.ALPN)) {
		err = errors.New("a connection to the proxy's own port must be mesh TLS")
	}
	if err != nil {
		l.count(conn, ci)
		l.log.Info("closing connection: protocol detection failed", "direction", l.direction, "client", ci.Client, "err", err)
		conn.closeWith("detect")
		return
	}
	if res.Protocol == detect.TLS && l.mesh != nil && meshtls.IsMesh(res.TLS.ALPN) {
		l.serveMesh(ctx, rc, conn, ci)
		return
	}
	l.count(conn, ci)
	if l.mustRefusePlaintext(ci) {
		l.refusePlaintext(conn, ci)
		return
	}
	switch res.Protocol {
	case detect.HTTP1, detect.HTTP2:
		l.serveHTTP(rc, ci, res.Protocol)
	default:
		// Opaque bytes, or TLS that is not the mesh's: the application's own.
		l.forwardOpaque(ctx, rc, conn, ci)
	}
}

// mustRefusePlaintext reports whether a connection that is not mesh TLS
// must be closed: it comes from the network to a port that requires mTLS.
// The workload's own connections over loopback are not from the network.
func (l *listener) mustRefusePlaintext(ci *stack.ConnInfo) bool {
	return !ci.Client.Addr().IsLoopback() && l.requireMTLS.covers(ci.OrigDst.Port())
}

// refusePlaintext closes a connection that require-mTLS refuses, before
// anything reaches the application; tcp_close_total counts it with errno
// "require_mtls".
func (l *listener) refusePlaintext(conn *meteredConn, ci *stack.ConnInfo) {
	l.log.Info("closing connection: this port requires mTLS", "direction", l.direction, "client", ci.Client, "dst", ci.OrigDst)
	conn.closeWith(closeRequireMTLS)
}

// closeRequireMTLS is the errno of a connection refused by require-mTLS.
const closeRequireMTLS = "require_mtls"

// closeAuthz is the errno of an opaque connection the inbound policy
// denied, at once or after a change.
const closeAuthz = "authz"

// serveMesh terminates mutual TLS from a peer proxy; the client's identity
// is then known to metrics and policy.
func (l *listener) serveMesh(ctx context.Context, rc *replayConn, conn *meteredConn, ci *stack.ConnInfo) {
	tc, err := meshtls.Server(ctx, rc, l.mesh.ServerTLS(meshtls.ALPNs))
	if err != nil {
		l.count(conn, ci)
		l.log.Info("closing connection: mesh TLS handshake failed", "client", ci.Client, "err", err)
		conn.closeWith("tls")
		return
	}
	state := tc.State()
	id, err := l.peerID(state)
	if err != nil {
		l.count(conn, ci)
		l.log.Info("closing connection: peer has no identity", "client", ci.Client, "err", err)
		conn.closeWith("tls")
		return
	}
	ci.ClientID = id
	switch {
	case state.NegotiatedProtocol == meshtls.ALPNHTTP && !ci.ToProxy:
		l.count(conn, ci)
		// Inside is HTTP/2, or HTTP/1.1 for upgrades: the first bytes say.
		res, c, err := detect.Detect(tc, l.detectTimeout)
		if err != nil || (res.Protocol != detect.HTTP1 && res.Protocol != detect.HTTP2) {
			l.log.Info("closing connection: mesh HTTP connection carries neither HTTP/1 nor HTTP/2", "client", ci.Client, "err", err)
			conn.closeWith("tls")
			return
		}
		l.serveHTTP(c, ci, res.Protocol)
	case state.NegotiatedProtocol == meshtls.ALPNOpaque && ci.ToProxy:
		tc.SetReadDeadline(time.Now().Add(meshtls.HandshakeTimeout))
		port, err := meshtls.ReadOpaqueHeader(tc)
		tc.SetReadDeadline(time.Time{})
		if err != nil {
			l.count(conn, ci)
			l.log.Info("closing connection: bad opaque mesh header", "client", ci.Client, "err", err)
			conn.closeWith("tls")
			return
		}
		ci.OrigDst = netip.AddrPortFrom(ci.OrigDst.Addr(), port)
		ci.ToProxy = false
		l.count(conn, ci)
		l.forwardOpaque(ctx, tc, conn, ci)
	default:
		l.count(conn, ci)
		l.log.Info("closing connection: mesh protocol does not fit the port", "client", ci.Client,
			"alpn", state.NegotiatedProtocol, "dst", ci.OrigDst)
		conn.closeWith("tls")
	}
}

// serveHTTP hands c to the engine of its HTTP version, which serves it
// until it ends. Each request is authorized in the stack; the connection
// is kept so that a policy change that leaves its client nothing to call
// drains it.
func (l *listener) serveHTTP(c net.Conn, ci *stack.ConnInfo, proto detect.Protocol) {
	engine := l.http1
	if proto == detect.HTTP2 {
		engine = l.http2
	}
	if l.authorizer != nil {
		defer l.authorizer.TrackHTTP(ci, func() { engine.DrainConn(ci) })()
	}
	engine.ServeConn(c, ci)
}

// count starts the connection's TCP metrics with what is known of it now.
func (l *listener) count(conn *meteredConn, ci *stack.ConnInfo) {
	tlsLabel := metrics.TLSNoIdentity
	if ci.ClientID != "" {
		tlsLabel = metrics.TLSTrue
	}
	ci.CacheOrigDstString()
	ci.Target = ci.OrigDstString()
	if l.appPorts != nil && !l.appPorts.Has(ci.OrigDst.Port()) {
		// A port nothing listens on: the client picked it, and naming it
		// would give every port a client tries its own series.
		ci.Target = metrics.Unknown
	}
	conn.attach(l.metrics.TCPOpen(metrics.TCPLabels{
		Direction:  l.direction,
		TargetAddr: ci.Target,
		TLS:        tlsLabel,
		ClientID:   ci.ClientID,
	}))
}

func (l *listener) connInfo(c net.Conn) (*stack.ConnInfo, error) {
	ci := &stack.ConnInfo{Direction: l.direction}
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
	// but back to the proxy, unless it is a peer proxy's opaque mesh
	// connection, which names its real port inside (see serveMesh).
	if la, ok := l.ln.Addr().(*net.TCPAddr); ok && int(ci.OrigDst.Port()) == la.Port {
		if l.mesh == nil {
			return nil, errors.New("connection to the proxy itself, not redirected")
		}
		ci.ToProxy = true
	}
	return ci, nil
}

// forwardOpaque copies bytes between the client and the upstream. Inbound
// under policy, the connection is authorized first: a denied one is
// closed (tcp_close_total errno "authz") before the application is even
// dialled; an allowed one is closed the same way when a tightened policy
// no longer allows it. conn is the client's socket, under down's TLS if
// any.
func (l *listener) forwardOpaque(ctx context.Context, down net.Conn, conn *meteredConn, ci *stack.ConnInfo) {
	defer down.Close()
	if l.authorizer != nil {
		if d := l.authorizer.Conn(ctx, ci); !d.Allowed {
			conn.closeWith(closeAuthz)
			return
		}
		defer l.authorizer.TrackOpaque(ci, func() { conn.closeWith(closeAuthz) })()
	}
	up, err := l.dialOpaque(ctx, ci)
	if err != nil {
		l.log.Info("opaque connection: connect failed", "direction", l.direction, "dst", ci.OrigDst, "err", err)
		return
	}
	defer up.Close()
	if _, err := tcp.Forward(ctx, down, up, nil, tcp.WithIdleTimeout(l.opaqueIdleTimeout)); err != nil {
		l.log.Debug("opaque connection ended", "direction", l.direction, "dst", ci.OrigDst, "err", err)
	}
}

// meteredConn counts a connection's bytes and its close in the TCP
// metrics. Bytes that move before the connection's labels are known are
// kept and added when attach names the series. onClose, if set, runs once
// when the connection is closed.
type meteredConn struct {
	net.Conn
	onClose func()
	mu      sync.Mutex
	m       *metrics.Conn
	read    int
	written int
	closed  atomic.Bool
}

func (c *meteredConn) attach(m *metrics.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = m
	m.AddRead(c.read)
	m.AddWrite(c.written)
}

func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if c.m != nil {
		c.m.AddRead(n)
	} else {
		c.read += n
	}
	c.mu.Unlock()
	return n, err
}

func (c *meteredConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	if c.m != nil {
		c.m.AddWrite(n)
	} else {
		c.written += n
	}
	c.mu.Unlock()
	return n, err
}

func (c *meteredConn) Close() error { return c.closeWith("") }

func (c *meteredConn) closeWith(reason string) error {
	if c.closed.CompareAndSwap(false, true) {
		c.mu.Lock()
		if c.m != nil {
			c.m.Close(reason)
		}
		c.mu.Unlock()
		err := c.Conn.Close()
		if c.onClose != nil {
			c.onClose()
		}
		return err
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
