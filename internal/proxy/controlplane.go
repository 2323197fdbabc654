package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skeinmesh/skein/internal/pki"
	"github.com/skeinmesh/skein/internal/proxy/destclient"
	"github.com/skeinmesh/skein/internal/proxy/identity"
	"github.com/skeinmesh/skein/internal/proxy/outbound"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

// controlPlane is the proxy's connection to the controller and the
// identity it got there; both empty when the proxy runs without one.
type controlPlane struct {
	conn     *grpc.ClientConn
	identity *identity.Local
}

func connectControlPlane(cfg Config, log *slog.Logger) (*controlPlane, error) {
	cp := &controlPlane{}
	if cfg.ControllerAddr == "" {
		return cp, nil
	}
	anchors, err := loadTrustAnchors(cfg)
	if err != nil {
		return nil, err
	}
	creds := credentials.NewTLS(identity.ControllerTLS(anchors, cfg.controllerID()))
	// The connection is made lazily and re-made with a short back-off, so
	// a controller that is down at start or goes away is picked up again.
	// No service config from DNS: its TXT lookup waits out the resolver's
	// timeouts (10 s with glibc's defaults) wherever no DNS server answers
	// for the controller's name, which /etc/hosts may give instead.
	cp.conn, err = grpc.NewClient(cfg.ControllerAddr,
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(destclient.ConnectParams()),
		grpc.WithDisableServiceConfig())
	if err != nil {
		return nil, fmt.Errorf("controller-addr: %w", err)
	}
	if cfg.Identity != "" {
		cp.identity, err = identity.New(identity.Config{
			Identity:     cfg.Identity,
			TokenFile:    cfg.TokenFile,
			ClockSkew:    cfg.ClockSkew,
			TrustAnchors: anchors,
			Client:       identitypb.NewIdentityClient(cp.conn),
			Log:          log,
		})
		if err != nil {
			cp.conn.Close()
			return nil, fmt.Errorf("identity: %w", err)
		}
	}
	return cp, nil
}

func (cp *controlPlane) close() {
	if cp.conn != nil {
		cp.conn.Close()
	}
}

// meshClient is the client side of mesh TLS, or nil without an identity
// (an untyped nil: outbound tests the interface against nil).
func (cp *controlPlane) meshClient() outbound.MeshTLS {
	if cp.identity == nil {
		return nil
	}
	return cp.identity
}

// meshServer is the server side of mesh TLS, or nil without an identity.
func (cp *controlPlane) meshServer() MeshServer {
	if cp.identity == nil {
		return nil
	}
	return cp.identity
}

func (cp *controlPlane) adminHandlers() map[string]http.Handler {
	if cp.identity == nil {
		return nil
	}
	return map[string]http.Handler{"/identity": cp.identity.StatusHandler()}
}

// peerID names the verified client of a mesh connection.
func peerID(cs tls.ConnectionState) (string, error) {
	id, err := identity.PeerID(cs)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// loadTrustAnchors reads the trust anchors from the configured file or PEM.
func loadTrustAnchors(cfg Config) ([]*x509.Certificate, error) {
	if cfg.TrustAnchorsPEM != "" {
		anchors, err := pki.ParseCertificates([]byte(cfg.TrustAnchorsPEM))
		if err != nil {
			return nil, fmt.Errorf("trust-anchors-pem: %w", err)
		}
		return anchors, nil
	}
	data, err := os.ReadFile(cfg.TrustAnchorsFile)
	if err != nil {
		return nil, fmt.Errorf("trust-anchors: %w", err)
	}
	anchors, err := pki.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("trust-anchors: %s: %w", cfg.TrustAnchorsFile, err)
	}
	return anchors, nil
}
