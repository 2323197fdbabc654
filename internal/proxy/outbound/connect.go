package outbound

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/proxy/clientpool"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/meshtls"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// maxEndpointClients bounds the engine Clients the connect handler keeps:
// one per endpoint address, server identity and HTTP version. Discovery
// chooses the endpoints, and passthrough requests the workload's own
// destinations; past the cap the least recently used is retired.
const maxEndpointClients = 4096

// endpointKey names one pooled Client: what it dials and how.
type endpointKey struct {
	addr netip.AddrPort
	id   string // the identity the server must prove; "" for plain TCP
	h2   bool
}

// connector is the outbound terminal handler: it sends each request to the
// endpoint the layers above chose (req.Info.Endpoint).
type connector struct {
	u       *Upstream
	engines clientpool.Engines
	clients *clientpool.Pool[endpointKey, clientpool.Client]
}

// Connect returns the terminal handler of the outbound stack, which sends
// a request to req.Info.Endpoint with the engines' Clients:
//   - to an endpoint with an identity (a meshed one), over mesh TLS to its
//     proxy: HTTP/2 for everything (an HTTP/1 request marked with
//     meshtls.OrigProtoHeader), except HTTP/1 upgrades (WebSocket), which stay
//     HTTP/1.1 inside mesh TLS, and HTTP/1 CONNECT, which goes as bytes
//     through an opaque mesh connection to the peer proxy's own port;
//   - anywhere else, as the client spoke it, over plain TCP.
//
// Its Clients are pooled and swept until the Upstream's context ends.
func (u *Upstream) Connect(engines clientpool.Engines) stack.Handler {
	c := &connector{u: u, engines: engines}
	c.clients = clientpool.New(maxEndpointClients, c.newClient)
	go c.clients.Run(u.ctx)
	return c
}

func (c *connector) Serve(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	ep := req.Info.Endpoint
	meshed := ep.Identity != "" && c.u.mesh != nil
	if req.Method == "CONNECT" && req.ProtoMajor == 1 {
		return c.tunnel(ctx, req, ep, meshed)
	}
	if !meshed {
		return c.clients.Get(endpointKey{addr: ep.Addr, h2: req.ProtoMajor == 2}).Serve(ctx, req)
	}
	req.Info.ServerID = ep.Identity
	key := endpointKey{addr: ep.Addr, id: ep.Identity, h2: !req.IsUpgrade()}
	if req.ProtoMajor == 1 && key.h2 {
		req.Header.Set(meshtls.OrigProtoHeader, "HTTP/1.1")
	}
	return c.clients.Get(key).Serve(ctx, req)
}

func (c *connector) newClient(k endpointKey) clientpool.Client {
	newClient := c.engines.HTTP1
	if k.h2 {
		newClient = c.engines.HTTP2
	}
	addr := k.addr.String()
	if k.id == "" {
		return newClient(func(ctx context.Context) (net.Conn, error) {
			return c.u.dialer.DialContext(ctx, "tcp", addr)
		})
	}
	// The identity is parsed once per Client, not once per request.
	id, err := spiffeid.FromString(k.id)
	if err != nil {
		return refusing{fmt.Errorf("endpoint %s has a bad identity %q: %w", k.addr, k.id, err)}
	}
	return newClient(func(ctx context.Context) (net.Conn, error) {
		return c.u.mesh.dial(ctx, addr, id, meshtls.ALPNHTTP)
	})
}

// refusing is the Client of an endpoint that cannot be called: it fails
// every request with err.
type refusing struct{ err error }

func (r refusing) Serve(_ context.Context, req *stack.Request) (*stack.Response, error) {
	req.Body.Close()
	return nil, r.err
}

func (refusing) CloseIdle() bool { return true }
func (refusing) Close()          {}

// tunnel carries an HTTP/1 CONNECT as today's tunnels go: on a connection
// of its own to the endpoint (an opaque mesh connection to a meshed one's
// proxy, which hands the bytes to the application), with the request
// itself sent first, so the server (an HTTP proxy) answers it.
func (c *connector) tunnel(ctx context.Context, req *stack.Request, ep discovery.Endpoint, meshed bool) (*stack.Response, error) {
	if meshed {
		req.Info.ServerID = ep.Identity
	}
	dial := func(ctx context.Context) (net.Conn, error) { return c.u.dialOpaque(ctx, ep) }
	return c.engines.ServeAlone(ctx, req, dial, ep.Addr.String())
}
