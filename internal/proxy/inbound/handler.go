package inbound

import (
	"context"
	"net"
	"net/netip"

	"github.com/skeinmesh/skein/internal/proxy/clientpool"
	"github.com/skeinmesh/skein/internal/proxy/meshtls"
	"github.com/skeinmesh/skein/internal/proxy/origdst"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// maxAppClients bounds the engine Clients kept per client address (TPROXY)
// or in all (redirect mode): one per application address and HTTP
// version. The port is the client's to choose.
const maxAppClients = 64

// appKey names one pooled Client to the application.
type appKey struct {
	dst netip.AddrPort
	h2  bool
}

// appClients are the Clients that connect from one source.
type appClients = clientpool.Pool[appKey, clientpool.Client]

// Handler returns the terminal handler of the inbound stack: it sends each
// request to the application at the address the client dialled, in the
// HTTP version the client spoke; a request a meshed peer carried over
// HTTP/2 for an HTTP/1.x client (meshtls.OrigProtoHeader) goes on in
// HTTP/1.1. In TPROXY mode it connects from the client's own address, with
// Clients of their own per client address (at most maxSourcePools of
// them). Its Clients are swept until ctx ends.
func (u *Upstream) Handler(ctx context.Context, engines clientpool.Engines) stack.Handler {
	a := &toApp{u: u, engines: engines}
	a.sources = clientpool.New(maxSourcePools, a.newSource)
	go a.sources.Run(ctx)
	return a
}

type toApp struct {
	u       *Upstream
	engines clientpool.Engines
	sources *clientpool.Pool[netip.Addr, *appClients]
}

func (a *toApp) Serve(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	ci := req.Conn
	if v := req.Header.Get(meshtls.OrigProtoHeader); v != "" {
		req.Header.Del(meshtls.OrigProtoHeader)
		// Only a peer proxy (an mTLS client) may ask for a downgrade.
		if ci.ClientID != "" && v == "HTTP/1.1" {
			req.ProtoMajor = 1
		}
	}
	if req.Method == "CONNECT" && req.ProtoMajor == 1 {
		return a.tunnel(ctx, req)
	}
	return a.source(ci).Get(appKey{dst: ci.OrigDst, h2: req.ProtoMajor == 2}).Serve(ctx, req)
}

// source returns the Clients that connect from ci's client address in
// TPROXY mode, or the shared ones.
func (a *toApp) source(ci *stack.ConnInfo) *appClients {
	var src netip.Addr
	if a.u.transparent && ci.Client.IsValid() {
		src = ci.Client.Addr()
	}
	return a.sources.Get(src)
}

func (a *toApp) newSource(src netip.Addr) *appClients {
	return clientpool.New(maxAppClients, func(k appKey) clientpool.Client {
		newClient := a.engines.HTTP1
		if k.h2 {
			newClient = a.engines.HTTP2
		}
		return newClient(a.dialer(src, k.dst))
	})
}

// dialer connects to the application at dst, from src when it is valid
// (TPROXY).
func (a *toApp) dialer(src netip.Addr, dst netip.AddrPort) clientpool.Dial {
	addr := dst.String()
	return func(ctx context.Context) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, connectTimeout)
		defer cancel()
		if src.IsValid() {
			return origdst.DialContext(ctx, "tcp", addr, origdst.DialOptions{Mark: tproxyMark, TransparentSource: src})
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// tunnel sends an HTTP/1 CONNECT to the application on a connection of its
// own, which becomes the tunnel.
func (a *toApp) tunnel(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	dial := func(ctx context.Context) (net.Conn, error) { return a.u.Dial(ctx, req.Conn) }
	return a.engines.ServeAlone(ctx, req, dial, req.Conn.OrigDst.String())
}
