// Package inbound carries connections and requests that arrive for the
// workload on to the application, at the address the client dialled. In
// TPROXY mode it connects from the client's own address so the application
// sees who is calling.
package inbound

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/httpproxy"
	"github.com/skeinmesh/skein/internal/proxy/origdst"
)

// tproxyMark marks the proxy's transparent connections to the application;
// the tproxy rules of skein-init route the answers back to the proxy by it.
const tproxyMark = 0x539

const connectTimeout = 3 * time.Second

// maxSourcePools bounds how many client addresses have a connection pool of
// their own in TPROXY mode: the addresses are the clients' to choose (an
// IPv6 client may hold a whole /64), so past this many the least recently
// used pool is dropped to make room.
const maxSourcePools = 1024

// Upstream forwards inbound traffic to the application. It implements
// httpproxy.Upstream.
type Upstream struct {
	transparent bool
	plain       *httpproxy.Transports

	mu sync.Mutex
	// bySource pools connections per client address in TPROXY mode: a
	// connection made from one client's address must not carry another's.
	bySource map[netip.Addr]*sourcePool
}

type sourcePool struct {
	transports *httpproxy.Transports
	lastUsed   time.Time
}

// New returns an Upstream; transparent selects TPROXY mode. Its background
// work stops when ctx ends.
func New(ctx context.Context, transparent bool) *Upstream {
	u := &Upstream{transparent: transparent, bySource: make(map[netip.Addr]*sourcePool)}
	u.plain = httpproxy.NewTransports(func(ctx context.Context, network, addr string) (net.Conn, error) {
		return (&net.Dialer{Timeout: connectTimeout}).DialContext(ctx, network, addr)
	})
	go u.closeIdle(ctx)
	return u
}

// RoundTrip sends req to the application at the original destination, in
// the HTTP version the client spoke: a request the mesh carried over HTTP/2
// for an HTTP/1.x client goes on in HTTP/1.1.
func (u *Upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	ci := httpproxy.ConnInfoFrom(req.Context())
	out := httpproxy.To(req, ci.OrigDst.String())
	transports := u.transportsFor(ci)
	rt := transports.For(req)
	if v := req.Header.Get(httpproxy.OrigProtoHeader); v != "" {
		out.Header = req.Header.Clone()
		out.Header.Del(httpproxy.OrigProtoHeader)
		// Only a peer proxy (an mTLS client) may ask for a downgrade.
		if ci.ClientID != "" && v == "HTTP/1.1" {
			rt = transports.HTTP1()
		}
	}
	return rt.RoundTrip(out)
}

// DialTunnel connects a CONNECT request to the application.
func (u *Upstream) DialTunnel(ctx context.Context, req *http.Request) (net.Conn, error) {
	return u.Dial(ctx, httpproxy.ConnInfoFrom(ctx))
}

// Dial connects to the application for the connection described by ci.
func (u *Upstream) Dial(ctx context.Context, ci *httpproxy.ConnInfo) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if u.transparent && ci.Client.IsValid() {
		return origdst.DialContext(ctx, "tcp", ci.OrigDst.String(), origdst.DialOptions{
			Mark:              tproxyMark,
			TransparentSource: ci.Client.Addr(),
		})
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", ci.OrigDst.String())
}

func (u *Upstream) transportsFor(ci *httpproxy.ConnInfo) *httpproxy.Transports {
	if !u.transparent || !ci.Client.IsValid() {
		return u.plain
	}
	src := ci.Client.Addr()
	u.mu.Lock()
	defer u.mu.Unlock()
	p, ok := u.bySource[src]
	if !ok {
		if len(u.bySource) >= maxSourcePools {
			u.dropLeastRecentPool()
		}
		p = &sourcePool{transports: httpproxy.NewTransports(func(ctx context.Context, network, addr string) (net.Conn, error) {
			return origdst.DialContext(ctx, network, addr, origdst.DialOptions{Mark: tproxyMark, TransparentSource: src})
		})}
		u.bySource[src] = p
	}
	p.lastUsed = time.Now()
	return p.transports
}

// dropLeastRecentPool forgets the pool used longest ago; its connections
// in use finish, its idle ones are closed. The caller holds u.mu.
func (u *Upstream) dropLeastRecentPool() {
	var oldest netip.Addr
	var oldestUse time.Time
	for src, p := range u.bySource {
		if !oldest.IsValid() || p.lastUsed.Before(oldestUse) {
			oldest, oldestUse = src, p.lastUsed
		}
	}
	if p, ok := u.bySource[oldest]; ok {
		p.transports.CloseIdleConnections()
		delete(u.bySource, oldest)
	}
}

// closeIdle drops pooled connections and per-client pools nobody uses.
func (u *Upstream) closeIdle(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			u.plain.CloseIdleConnections()
			return
		case now := <-t.C:
			u.plain.CloseIdleConnections()
			u.mu.Lock()
			for src, p := range u.bySource {
				p.transports.CloseIdleConnections()
				if now.Sub(p.lastUsed) > 5*time.Minute {
					delete(u.bySource, src)
				}
			}
			u.mu.Unlock()
		}
	}
}
