package outbound

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/meshtls"
	"github.com/skeinmesh/skein/internal/proxy/rawio"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// maxConnectAttempts bounds how many endpoints one request tries when
// connecting fails; a connect failure never sent a byte, so it is safe to
// try another endpoint whatever the request is.
const maxConnectAttempts = 3

// connectTimeout bounds one connection attempt to an endpoint.
const connectTimeout = 3 * time.Second

// Upstream resolves and balances the workload's outgoing requests and
// connections: the resolve and balance layers and the connect handler of
// the outbound stack (layers.go, connect.go), and opaque connections.
type Upstream struct {
	dests  *destinations
	mesh   *meshDialer // nil without an identity
	dialer net.Dialer
	log    *slog.Logger
	ctx    context.Context // owns the background work
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
	if mesh != nil {
		u.mesh = &meshDialer{tls: mesh, dialer: &u.dialer}
	}
	go u.dests.run(ctx)
	return u
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

// authorityWithPort is host with the port the client connected to when host
// has none.
func authorityWithPort(host string, origDst netip.AddrPort) string {
	if host == "" || hasPort(host) || !origDst.IsValid() {
		return host
	}
	return net.JoinHostPort(host, fmt.Sprint(origDst.Port()))
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
		c, err := u.dialPlain(ctx, origDst)
		return c, discovery.Endpoint{Addr: origDst}, err
	}
	var avoid []netip.AddrPort
	for attempt := 1; ; attempt++ {
		h, err := d.balancer.Pick(ctx, avoid...)
		if err != nil {
			return nil, discovery.Endpoint{}, pickError(d, err)
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
		return u.dialPlain(ctx, ep.Addr)
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

// dialPlain connects to addr over TCP, read and written raw as the
// request path's connections are (see package rawio): an opaque connection
// is a request path too.
func (u *Upstream) dialPlain(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	c, err := u.dialer.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	return rawio.Wrap(c), nil
}

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
