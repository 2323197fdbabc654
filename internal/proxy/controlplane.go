package proxy

import (
	"context"
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
	"github.com/skeinmesh/skein/internal/proxy/tap"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

// maxControllerMessage bounds one message from the controller. A
// destination snapshot costs 130-240 bytes per endpoint, so gRPC's 4 MiB
// default is exceeded past ~21,000 endpoints and such a stream would fail
// for ever (25,000 endpoints with everyday names are 5.8 MB); 64 MiB
// holds a snapshot of some 280,000.
const maxControllerMessage = 64 << 20

// controlPlane is the proxy's connections to the controller and the
// identity it got there; all empty when the proxy runs without one.
type controlPlane struct {
	// certify carries Certify, which the proxy calls before it has a
	// certificate, so it presents none. conn carries every other API
	// (discovery): the controller answers those only to a mesh client
	// certificate, so its handshake presents the current one and fails,
	// to be retried with the connection's back-off, until there is one.
	certify  *grpc.ClientConn
	conn     *grpc.ClientConn
	identity *identity.Local
}

func connectControlPlane(cfg Config, log *slog.Logger) (*controlPlane, error) {
	cp := &controlPlane{}
	if cfg.ControllerAddr == "" {
		return cp, nil
	}
	anchors, err := loadTrustAnchors(cfg, log)
	if err != nil {
		return nil, err
	}
	// One set of anchors for every TLS config: the controller replaces it
	// during an anchor rotation (WatchTrustBundle, Certify answers).
	held, err := identity.NewAnchors(cfg.controllerID().TrustDomain(), anchors, log)
	if err != nil {
		return nil, fmt.Errorf("trust-anchors: %w", err)
	}
	if cfg.TrustAnchorsKeep != "" {
		held.KeepIn(cfg.TrustAnchorsKeep)
	}
	if cp.certify, err = dialController(cfg.ControllerAddr, identity.ControllerTLSFrom(held, cfg.controllerID())); err != nil {
		return nil, err
	}
	cp.identity, err = identity.New(identity.Config{
		Identity:  cfg.Identity,
		TokenFile: cfg.TokenFile,
		ClockSkew: cfg.ClockSkew,
		Anchors:   held,
		Client:    identitypb.NewIdentityClient(cp.certify),
		Log:       log,
	})
	if err != nil {
		cp.close()
		return nil, fmt.Errorf("identity: %w", err)
	}
	if cp.conn, err = dialController(cfg.ControllerAddr, cp.identity.ClientTLS(cfg.controllerID(), []string{"h2"})); err != nil {
		cp.close()
		return nil, err
	}
	return cp, nil
}

// dialController makes a connection to the controller. It connects lazily
// and is re-made with a short back-off, so a controller that is down at
// start or goes away is picked up again. No service config from DNS: its
// TXT lookup waits out the resolver's timeouts (10 s with glibc's
// defaults) wherever no DNS server answers for the controller's name,
// which /etc/hosts may give instead.
func dialController(addr string, tlsConfig *tls.Config) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		grpc.WithConnectParams(destclient.ConnectParams()),
		grpc.WithDisableServiceConfig(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxControllerMessage)))
	if err != nil {
		return nil, fmt.Errorf("controller-addr: %w", err)
	}
	return conn, nil
}

// runIdentity gets and renews the certificate and follows the
// controller's trust bundle until ctx is done; nothing without an identity.
func (cp *controlPlane) runIdentity(ctx context.Context) {
	if cp.identity == nil {
		return
	}
	go cp.identity.Run(ctx)
	go cp.identity.WatchTrustBundle(ctx, identitypb.NewIdentityClient(cp.conn))
}

func (cp *controlPlane) close() {
	for _, conn := range []*grpc.ClientConn{cp.certify, cp.conn} {
		if conn != nil {
			conn.Close()
		}
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

// tapService is the tap the admin port serves: over mTLS with the current
// mesh certificate, to the controller's identity only (the one the proxy
// requires of the controller when it dials it); none without an identity.
func (cp *controlPlane) tapService(cfg Config, taps *tap.Tap, log *slog.Logger) tapService {
	if cp.identity == nil {
		return tapService{}
	}
	controller := cfg.controllerID()
	return tapService{
		tls:    cp.identity.ServerTLSFor(controller, []string{"h2"}),
		server: tap.NewServer(taps, controller.String(), log),
		client: controller.String(),
	}
}

// peerID names the verified client of a mesh connection.
func peerID(cs tls.ConnectionState) (string, error) {
	id, err := identity.PeerID(cs)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// loadTrustAnchors reads the trust anchors from the configured file or
// PEM, and returns instead those kept in TrustAnchorsKeep before a restart
// when there are some: the controller sent them more recently than this
// pod was started with its own.
func loadTrustAnchors(cfg Config, log *slog.Logger) ([]*x509.Certificate, error) {
	anchors, err := configuredTrustAnchors(cfg)
	if err != nil || cfg.TrustAnchorsKeep == "" {
		return anchors, err
	}
	if kept, ok := identity.LoadKept(cfg.TrustAnchorsKeep, log); ok {
		log.Info("starting from the trust anchors kept from before a restart", "path", cfg.TrustAnchorsKeep)
		return kept, nil
	}
	return anchors, nil
}

// configuredTrustAnchors reads the trust anchors from the configured file
// or PEM.
func configuredTrustAnchors(cfg Config) ([]*x509.Certificate, error) {
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
