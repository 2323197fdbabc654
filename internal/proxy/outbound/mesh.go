package outbound

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/httpproxy"
	"github.com/skeinmesh/skein/internal/proxy/meshtls"
)

// MeshTLS gives the client side of mesh connections: the proxy's own
// certificate and the check of the server's identity.
type MeshTLS interface {
	ClientTLS(serverID spiffeid.ID, nextProtos []string) *tls.Config
}

// meshTransports carries requests to meshed endpoints over mutual TLS. It
// keeps one pool per server identity, so that a pooled connection is only
// ever reused for the identity it was verified against.
type meshTransports struct {
	tls    MeshTLS
	dialer *net.Dialer

	mu   sync.Mutex
	byID map[spiffeid.ID]*httpproxy.Transports
}

func newMeshTransports(t MeshTLS, d *net.Dialer) *meshTransports {
	return &meshTransports{tls: t, dialer: d, byID: make(map[spiffeid.ID]*httpproxy.Transports)}
}

func (m *meshTransports) forIdentity(id spiffeid.ID) *httpproxy.Transports {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.byID[id]
	if !ok {
		t = httpproxy.NewTransports(func(ctx context.Context, network, addr string) (net.Conn, error) {
			return m.dial(ctx, addr, id, meshtls.ALPNHTTP)
		})
		m.byID[id] = t
	}
	return t
}

// dial opens a mesh TLS connection to addr, which must prove it is id.
func (m *meshTransports) dial(ctx context.Context, addr string, id spiffeid.ID, alpn string) (net.Conn, error) {
	raw, err := m.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &dialError{err}
	}
	c, err := meshtls.Client(ctx, raw, m.tls.ClientTLS(id, []string{alpn}))
	if err != nil {
		// Nothing of the request was sent: as safe to retry as a refused
		// connection.
		return nil, &dialError{err}
	}
	return c, nil
}

func (m *meshTransports) closeIdle() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.byID {
		t.CloseIdleConnections()
	}
}

// routeTo addresses req to ep and picks how it travels: over mesh TLS when
// the endpoint has an identity (HTTP/2 always, except upgrades), else as the
// client spoke it. It returns the server identity it will check, if any.
func (u *Upstream) routeTo(req *http.Request, ep discovery.Endpoint) (http.RoundTripper, *http.Request, string, error) {
	out := httpproxy.To(req, ep.Addr.String())
	if ep.Identity == "" || u.mesh == nil {
		return u.transports.For(req), out, "", nil
	}
	id, err := spiffeid.FromString(ep.Identity)
	if err != nil {
		return nil, nil, "", fmt.Errorf("endpoint %s has a bad identity %q: %w", ep.Addr, ep.Identity, err)
	}
	t := u.mesh.forIdentity(id)
	if httpproxy.IsUpgrade(req) {
		return t.HTTP1(), out, ep.Identity, nil
	}
	if req.ProtoMajor == 1 {
		out.Header = req.Header.Clone()
		out.Header.Set(httpproxy.OrigProtoHeader, "HTTP/1.1")
	}
	return t.HTTP2(), out, ep.Identity, nil
}
