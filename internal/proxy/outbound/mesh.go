package outbound

import (
	"context"
	"crypto/tls"
	"net"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/proxy/meshtls"
	"github.com/skeinmesh/skein/internal/proxy/rawio"
)

// MeshTLS gives the client side of mesh connections: the proxy's own
// certificate and the check of the server's identity.
type MeshTLS interface {
	ClientTLS(serverID spiffeid.ID, nextProtos []string) *tls.Config
}

// meshDialer opens mesh TLS connections to meshed endpoints' proxies,
// checking that each proves the identity discovery announced.
type meshDialer struct {
	tls    MeshTLS
	dialer *net.Dialer
}

// dial opens a mesh TLS connection to addr, which must prove it is id.
func (m *meshDialer) dial(ctx context.Context, addr string, id spiffeid.ID, alpn string) (net.Conn, error) {
	raw, err := m.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c, err := meshtls.Client(ctx, rawio.Wrap(raw), m.tls.ClientTLS(id, []string{alpn}))
	if err != nil {
		// Nothing of the request was sent: as safe to retry as a refused
		// connection.
		return nil, err
	}
	return c, nil
}
