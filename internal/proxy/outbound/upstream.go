package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/httpproxy"
	"github.com/skeinmesh/skein/internal/proxy/meshtls"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// maxConnectAttempts bounds how many endpoints one request tries when
// connecting fails; a connect failure never sent a byte, so it is safe to
// try another endpoint whatever the request is.
const maxConnectAttempts = 3

// connectTimeout bounds one connection attempt to an endpoint.
const connectTimeout = 3 * time.Second

// Upstream resolves and balances the workload's outgoing requests and
// connections. It implements httpproxy.Upstream.
type Upstream struct {
	dests      *destinations
	transports *httpproxy.Transports
	mesh       *meshTransports // nil without an identity
	dialer     net.Dialer
	log        *slog.Logger
	ctx        context.Context // owns the background work
}

// New returns an Upstream that asks r about destinations. With mesh set,
// traffic to endpoints that have an identity travels over mutual TLS; nil
// sends everything as the client spoke it. Its watches and background work
// stop when ctx ends.
func New(ctx context.Context, r discovery.Resolver, opts balance.Options, mesh MeshTLS, log *slog.Logger) *Upstream {
	u := &Upstream{
		dests:  newDestinations(ctx, r, opts, log),
		dialer: net.Dialer{Timeout: connectTimeout},
		log:    log,
		ctx:    ctx,
	}
	u.transports = httpproxy.NewTransports(u.dial)
	if mesh != nil {
		u.mesh = newMeshTransports(mesh, &u.dialer)
	}
	go u.dests.run(ctx)
	go u.closeIdle(ctx)
	return u
}

// closeIdle periodically closes pooled connections that nobody uses, so
// those to removed endpoints go away once drained.
func (u *Upstream) closeIdle(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			u.closeIdleNow()
			return
		case <-t.C:
			u.closeIdleNow()
		}
	}
}

func (u *Upstream) closeIdleNow() {
	u.transports.CloseIdleConnections()
	if u.mesh != nil {
		u.mesh.closeIdle()
	}
}

// dialError marks a failure to connect: nothing of the request was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func (u *Upstream) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := u.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, &dialError{err}
	}
	return c, nil
}

// resolve finds the destination of a request: the authority when discovery
// knows it by name, else the original destination address. A nil
// destination with a nil error means discovery knows neither, and the
// request may go where the client sent it, in plaintext.
//
// A proxy with an identity never lets a request go out in plaintext on a
// guess: until discovery has answered for the authority and the address,
// or when the address is one discovery reported meshed before, it refuses
// with an error wrapping stack.ErrRefusedWithoutMTLS. Only the requests
// that arrive while a destination's first answer is awaited wait for it
// (see destinations.wait); later ones are refused at once.
func (u *Upstream) resolve(ctx context.Context, authority string, origDst netip.AddrPort) (*destination, error) {
	var byName, byAddr *destination
	if authority != "" && hasPort(authority) {
		if byName = u.dests.get(authority); byName.exists() {
			return byName, nil
		}
	}
	if origDst.IsValid() {
		byAddr = u.dests.get(origDst.String())
	}
	// The slow path. The name comes first: while its first answer is
	// awaited, a known address must not win (the request would be counted
	// and routed as the address's). Both watches run by now, so the waits
	// overlap.
	if byName != nil && !byName.answered() {
		if u.dests.wait(ctx, byName); byName.exists() {
			return byName, nil
		}
	}
	if byAddr != nil {
		if !byAddr.answered() {
			u.dests.wait(ctx, byAddr)
		}
		if byAddr.exists() {
			return byAddr, nil
		}
	}
	if u.mesh == nil {
		return nil, nil
	}
	for _, d := range []*destination{byName, byAddr} {
		if d != nil && !d.answered() {
			return nil, fmt.Errorf("discovery has not answered for %s; %w", d.key, stack.ErrRefusedWithoutMTLS)
		}
	}
	if origDst.IsValid() && u.dests.meshed.contains(origDst, time.Now()) {
		return nil, fmt.Errorf("%s is a meshed endpoint that discovery does not know now; %w", origDst, stack.ErrRefusedWithoutMTLS)
	}
	return nil, nil
}

func hasPort(authority string) bool {
	_, port, err := net.SplitHostPort(authority)
	return err == nil && port != ""
}

// requestAuthority is the authority to resolve: Host with the port the
// client connected to when Host has none.
func requestAuthority(req *http.Request, origDst netip.AddrPort) string {
	return authorityWithPort(req.Host, origDst)
}

// authorityWithPort is host with the port the client connected to when host
// has none.
func authorityWithPort(host string, origDst netip.AddrPort) string {
	if host == "" || hasPort(host) || !origDst.IsValid() {
		return host
	}
	return net.JoinHostPort(host, fmt.Sprint(origDst.Port()))
}

// RoundTrip sends req to an endpoint of its destination, trying another
// endpoint when connecting fails.
func (u *Upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	ci := httpproxy.ConnInfoFrom(ctx)
	ri := httpproxy.RequestInfoFrom(ctx)

	d, err := u.resolve(ctx, requestAuthority(req, ci.OrigDst), ci.OrigDst)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return u.passthrough(req, ci.OrigDst, u.transports.For(req))
	}
	if ri != nil {
		ri.Service = d.key
	}
	body := newRetryableBody(req.Body)
	var avoid []netip.AddrPort
	for attempt := 1; ; attempt++ {
		h, err := d.balancer.Pick(ctx, avoid...)
		if err != nil {
			if errors.Is(err, balance.ErrNoEndpoints) {
				return nil, fmt.Errorf("%s: %w", d.key, stack.ErrNoEndpoints)
			}
			return nil, err
		}
		ep := h.Endpoint()
		if ri != nil {
			ri.Endpoint = ep
		}
		transport, out, serverID, err := u.routeTo(req, ep)
		if err != nil {
			h.Done(true)
			return nil, err
		}
		if ri != nil {
			ri.ServerID = serverID
		}
		if body != nil {
			out.Body = body
		}
		// The latency sample starts once a connection is there: connecting
		// (and a TLS handshake) is not the endpoint being slow to answer.
		out = out.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			GotConn: func(httptrace.GotConnInfo) { h.Sending() },
		}))
		resp, err := transport.RoundTrip(out)
		if err != nil {
			h.Done(true)
			var de *dialError
			if errors.As(err, &de) && !body.started() && attempt < maxConnectAttempts {
				u.log.Debug("connect failed, trying another endpoint", "endpoint", ep.Addr, "err", err)
				avoid = append(avoid, ep.Addr)
				continue
			}
			return nil, fmt.Errorf("endpoint %s: %w", ep.Addr, err)
		}
		h.Responded()
		failed := metrics.IsFailure(resp.StatusCode, resp.Header.Get("Grpc-Status"))
		done := func(trailerFailed bool) { h.Done(failed || trailerFailed) }
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			// A 101 answer's body is the upgraded connection, which the
			// reverse proxy writes to as well.
			resp.Body = &doneConn{doneBody: doneBody{ReadCloser: rwc, resp: resp, done: done}, w: rwc}
		} else {
			resp.Body = &doneBody{ReadCloser: resp.Body, resp: resp, done: done}
		}
		return resp, nil
	}
}

// passthrough sends a request for a destination discovery does not know to
// the address the client dialled.
func (u *Upstream) passthrough(req *http.Request, origDst netip.AddrPort, transport http.RoundTripper) (*http.Response, error) {
	if !origDst.IsValid() {
		return nil, errors.New("no original destination to forward to")
	}
	if ri := httpproxy.RequestInfoFrom(req.Context()); ri != nil {
		ri.Endpoint = discovery.Endpoint{Addr: origDst}
	}
	out := httpproxy.To(req, origDst.String())
	return transport.RoundTrip(out)
}

// DialTunnel connects a CONNECT request to an endpoint of its destination.
func (u *Upstream) DialTunnel(ctx context.Context, req *http.Request) (net.Conn, error) {
	ci := httpproxy.ConnInfoFrom(ctx)
	c, _, err := u.DialDestination(ctx, ci.OrigDst)
	return c, err
}

// DialDestination opens a connection for opaque traffic to origDst: to an
// endpoint picked by the balancer when discovery knows the address, else to
// origDst itself. Closing the connection ends its load on the endpoint.
func (u *Upstream) DialDestination(ctx context.Context, origDst netip.AddrPort) (net.Conn, discovery.Endpoint, error) {
	d, err := u.resolve(ctx, "", origDst)
	if err != nil {
		return nil, discovery.Endpoint{Addr: origDst}, err
	}
	if d == nil {
		c, err := u.dialer.DialContext(ctx, "tcp", origDst.String())
		return c, discovery.Endpoint{Addr: origDst}, err
	}
	var avoid []netip.AddrPort
	for attempt := 1; ; attempt++ {
		h, err := d.balancer.Pick(ctx, avoid...)
		if err != nil {
			return nil, discovery.Endpoint{}, fmt.Errorf("%s: %w", d.key, err)
		}
		ep := h.Endpoint()
		c, err := u.dialOpaque(ctx, ep)
		if err != nil {
			h.Done(true)
			if attempt < maxConnectAttempts {
				avoid = append(avoid, ep.Addr)
				continue
			}
			return nil, ep, fmt.Errorf("endpoint %s: %w", ep.Addr, err)
		}
		h.Responded()
		// The connection counts as in flight on its endpoint until closed.
		return &trackedConn{Conn: c, done: func() { h.Done(false) }}, ep, nil
	}
}

// dialOpaque connects to ep for opaque traffic: over mesh TLS when it has
// an identity.
func (u *Upstream) dialOpaque(ctx context.Context, ep discovery.Endpoint) (net.Conn, error) {
	if ep.Identity == "" || u.mesh == nil {
		return u.dialer.DialContext(ctx, "tcp", ep.Addr.String())
	}
	id, err := spiffeid.FromString(ep.Identity)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s has a bad identity %q: %w", ep.Addr, ep.Identity, err)
	}
	// Opaque mesh traffic goes to the peer proxy's own port, with a header
	// naming the application's port (see meshtls.PeerInboundPort).
	peer := netip.AddrPortFrom(ep.Addr.Addr(), meshtls.PeerInboundPort)
	c, err := u.mesh.dial(ctx, peer.String(), id, meshtls.ALPNOpaque)
	if err != nil {
		return nil, err
	}
	if err := meshtls.WriteOpaqueHeader(c, ep.Addr.Port()); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// retryableBody lets a request be sent again after a failed connect: the
// transport closes a request body even when it never read it, so Close is
// only passed on once something was read.
type retryableBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

// newRetryableBody wraps rc; nil when there is no body, so that the
// transport still sees a request without one.
func newRetryableBody(rc io.ReadCloser) *retryableBody {
	if rc == nil || rc == http.NoBody {
		return nil
	}
	return &retryableBody{rc: rc}
}

func (b *retryableBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

func (b *retryableBody) Close() error {
	if b.read.Load() {
		return b.rc.Close()
	}
	return nil
}

// started reports whether any of the body was sent; nil has nothing to send.
func (b *retryableBody) started() bool {
	return b != nil && b.read.Load()
}

// doneBody reports the end of a response body (with its trailers) once.
type doneBody struct {
	io.ReadCloser
	resp *http.Response
	once sync.Once
	done func(trailerFailed bool)
}

func (b *doneBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.finish(metrics.IsFailure(b.resp.StatusCode, b.resp.Trailer.Get("Grpc-Status")))
	} else if err != nil && !errors.Is(err, context.Canceled) {
		b.finish(true)
	}
	return n, err
}

func (b *doneBody) Close() error {
	b.finish(false)
	return b.ReadCloser.Close()
}

func (b *doneBody) finish(failed bool) { b.once.Do(func() { b.done(failed) }) }

// doneConn is a doneBody that can also be written to (an upgraded
// connection).
type doneConn struct {
	doneBody
	w io.Writer
}

func (c *doneConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// trackedConn calls done once when closed.
type trackedConn struct {
	net.Conn
	once sync.Once
	done func()
}

func (c *trackedConn) Close() error {
	c.once.Do(c.done)
	return c.Conn.Close()
}

// CloseWrite half-closes the connection for tcp.Forward.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
