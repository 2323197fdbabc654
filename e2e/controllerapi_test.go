package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/controller"
	"github.com/skeinmesh/skein/internal/netns"
	"github.com/skeinmesh/skein/internal/pki"
	proxyidentity "github.com/skeinmesh/skein/internal/proxy/identity"
	destinationpb "github.com/skeinmesh/skein/proto/destination"
	identitypb "github.com/skeinmesh/skein/proto/identity"
	policypb "github.com/skeinmesh/skein/proto/policy"
)

// The controller's destination and policy APIs answer only mesh certificates: a
// client with none is refused with UNAUTHENTICATED before any endpoint is
// sent, and one with a certificate from another trust anchor fails the
// handshake.
func TestControllerAPIRefusesClientsWithoutMeshCertificate(t *testing.T) {
	cp := getControlPlane(t)
	anchors := cp.trustAnchors(t)
	ctlID := spiffeid.RequireFromString(controllerID)
	echo := fmt.Sprintf("%s:%d", cp.vip, cpPortGRPC)

	t.Run("no certificate", func(t *testing.T) {
		conn := cp.dialController(t, cp.plain, proxyidentity.ControllerTLS(anchors, ctlID))
		updates, err := firstUpdates(t, conn, echo)
		if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != "a mesh client certificate is required" {
			t.Errorf("Get without a certificate: %v, want UNAUTHENTICATED %q", err, "a mesh client certificate is required")
		}
		if updates != 0 {
			t.Errorf("%d updates came back without a certificate, want none", updates)
		}
		policies, err := firstPolicies(t, conn, echo)
		if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != "a mesh client certificate is required" {
			t.Errorf("WatchOutbound without a certificate: %v, want UNAUTHENTICATED %q", err, "a mesh client certificate is required")
		}
		if policies != 0 {
			t.Errorf("%d policies came back without a certificate, want none", policies)
		}
	})
	t.Run("certificate of another trust anchor", func(t *testing.T) {
		foreign := foreignSVID(t, spiffeid.RequireFromString(clientID))
		cfg := tlsconfig.MTLSClientConfig(foreign, x509bundle.FromX509Authorities(ctlID.TrustDomain(), anchors), tlsconfig.AuthorizeID(ctlID))
		cfg.MinVersion, cfg.NextProtos = tls.VersionTLS13, []string{"h2"}
		// TLS 1.3: the client's side of the handshake ends before the
		// server has checked the client's certificate; its verdict is the
		// first thing read.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		raw, err := cp.plain.DialContext(ctx, "tcp", fmt.Sprintf("%s:%d", cp.ctl.IP, portCtlGRPC))
		if err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(raw, cfg.Clone())
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatalf("client side of the handshake: %v", err)
		}
		if _, err := tc.Read(make([]byte, 1)); err == nil || err.Error() != "remote error: tls: bad certificate" {
			t.Errorf("first read after the handshake: %v, want the alert bad certificate", err)
		}
		updates, err := firstUpdates(t, cp.dialController(t, cp.plain, cfg), echo)
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Get with a foreign certificate: %v, want UNAVAILABLE (no connection)", err)
		}
		if updates != 0 {
			t.Errorf("%d updates came back to a foreign certificate, want none", updates)
		}
	})
	t.Run("mesh certificate", func(t *testing.T) {
		local := cp.certifyFrom(t, cp.plain, "spiffe://cluster.local/ns/test/sa/probe")
		conn := cp.dialController(t, cp.plain, local.ClientTLS(ctlID, []string{"h2"}))
		if updates, err := firstUpdates(t, conn, echo); updates != 1 {
			t.Errorf("Get with a mesh certificate: %d updates, %v; want the snapshot", updates, err)
		}
		if policies, err := firstPolicies(t, conn, echo); policies != 1 {
			t.Errorf("WatchOutbound with a mesh certificate: %d policies, %v; want the policy", policies, err)
		}
	})
}

// 10,000 destination streams from one client: exactly the per-peer cap is
// served, every other stream is refused with RESOURCE_EXHAUSTED.
func TestControllerCapsDestinationStreamsPerPeer(t *testing.T) {
	cp := getControlPlane(t)
	ctlID := spiffeid.RequireFromString(controllerID)
	local := cp.certifyFrom(t, cp.plain, "spiffe://cluster.local/ns/test/sa/flood")
	const conns, perConn = 10, 1000
	limit := controller.Default().MaxDestinationStreamsPerPeer
	rssBefore := rssKiB(t, cp.controller.cmd.Process.Pid)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	echo := destinationpb.GetDestination{Path: fmt.Sprintf("%s:%d", cp.vip, cpPortGRPC)}
	var (
		mu       sync.Mutex
		accepted int
		refused  int
		other    = map[string]int{}
		wg       sync.WaitGroup
	)
	for range conns {
		client := destinationpb.NewDestinationClient(cp.dialController(t, cp.plain, local.ClientTLS(ctlID, []string{"h2"})))
		for range perConn {
			wg.Go(func() {
				stream, err := client.Get(ctx, &echo)
				if err == nil {
					_, err = stream.Recv()
				}
				mu.Lock()
				defer mu.Unlock()
				switch st := status.Convert(err); {
				case err == nil:
					accepted++
				case st.Code() == codes.ResourceExhausted &&
					st.Message() == fmt.Sprintf("too many open destination streams from this client: at most %d per peer", limit):
					refused++
				default:
					other[st.Code().String()+": "+st.Message()]++
				}
			})
		}
	}
	wg.Wait()
	rssHeld := rssKiB(t, cp.controller.cmd.Process.Pid)
	t.Logf("%d streams: %d served, %d refused; controller RSS %d KiB before, %d KiB while they are held",
		conns*perConn, accepted, refused, rssBefore, rssHeld)
	if accepted != limit || refused != conns*perConn-limit || len(other) != 0 {
		t.Fatalf("served %d, refused %d, other answers %v; want %d served and %d refused with RESOURCE_EXHAUSTED",
			accepted, refused, other, limit, conns*perConn-limit)
	}
}

// trustAnchors reads the mesh's trust anchors.
func (cp *controlPlane) trustAnchors(t *testing.T) []*x509.Certificate {
	t.Helper()
	return readAnchors(t, filepath.Join(cp.identityDir, "ca.crt"))
}

// readAnchors reads the trust anchors of a ca.crt.
func readAnchors(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	anchors, err := pki.ParseCertificates(data)
	if err != nil {
		t.Fatal(err)
	}
	return anchors
}

// dialController connects to the controller's gRPC port from h.
func (cp *controlPlane) dialController(t *testing.T, h *netns.Host, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(fmt.Sprintf("passthrough:///%s:%d", cp.ctl.IP, portCtlGRPC),
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return h.DialContext(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// certifyFrom gets a certificate for id from the controller's identity
// service, called from h with a join token as a proxy would.
func (cp *controlPlane) certifyFrom(t *testing.T, h *netns.Host, id string) *proxyidentity.Local {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	token, err := skein(ctx, "identity", "token", "--key", filepath.Join(cp.identityDir, "join-token.key"), "--identity", id, "--ttl", "1h")
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(strings.TrimSpace(token)), 0o600); err != nil {
		t.Fatal(err)
	}
	anchors := cp.trustAnchors(t)
	conn := cp.dialController(t, h, proxyidentity.ControllerTLS(anchors, spiffeid.RequireFromString(controllerID)))
	local, err := proxyidentity.New(proxyidentity.Config{
		Identity: id, TokenFile: tokenFile, TrustAnchors: anchors,
		Client: identitypb.NewIdentityClient(conn), Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = local.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	for local.Ready() != nil {
		if ctx.Err() != nil {
			t.Fatalf("certifying %s: %v", id, local.Ready())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return local
}

// firstUpdates opens a destination stream for path and reads until the
// first update or error: it returns how many updates came (0 or 1) and the
// error, if any.
func firstUpdates(t *testing.T, conn *grpc.ClientConn, path string) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := destinationpb.NewDestinationClient(conn).Get(ctx, &destinationpb.GetDestination{Path: path})
	if err != nil {
		return 0, err
	}
	if _, err := stream.Recv(); err != nil {
		return 0, err
	}
	return 1, nil
}

// firstPolicies opens a policy stream for target and reads its first
// message: 1 and nil when it came.
func firstPolicies(t *testing.T, conn *grpc.ClientConn, target string) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := policypb.NewPolicyClient(conn).WatchOutbound(ctx, &policypb.OutboundRequest{Target: target})
	if err != nil {
		return 0, err
	}
	if _, err := stream.Recv(); err != nil {
		return 0, err
	}
	return 1, nil
}

// foreignSVID is a certificate for id under a trust anchor of the same
// trust domain that the mesh does not trust.
func foreignSVID(t *testing.T, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	anchorKey, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	anchor, err := pki.NewTrustAnchor(id.TrustDomain().Name(), anchorKey, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id.String())
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(1),
		URIs:         []*url.URL{u},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, anchor, &key.PublicKey, anchorKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf}, PrivateKey: key}
}
