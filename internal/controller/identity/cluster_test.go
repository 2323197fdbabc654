package identity_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/meshid"
	proxyidentity "github.com/skeinmesh/skein/internal/proxy/identity"
	"github.com/skeinmesh/skein/internal/testenv"
	"github.com/skeinmesh/skein/internal/testenv/cluster"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

// countTokenReviews counts the TokenReviews a client sends, and apart
// those of one token.
type countTokenReviews struct {
	next        http.RoundTripper
	count       *atomic.Int64
	token       []byte
	tokenCounts *atomic.Int64
}

func (c countTokenReviews) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/tokenreviews") {
		c.count.Add(1)
		if req.Body != nil {
			body, err := io.ReadAll(req.Body)
			req.Body.Close()
			if err != nil {
				return nil, err
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
			if bytes.Contains(body, c.token) {
				c.tokenCounts.Add(1)
			}
		}
	}
	return c.next.RoundTrip(req)
}

// Against a real API server, with client-go's default 5 QPS: while another
// client floods Certify with junk and with forged tokens of the right
// shape, a real service account's token is certified, the junk never
// reaches the API server, the forgeries only as fast as the per-client
// limit lets them, and the real token is reviewed once however often it is
// sent.
func TestRealTokenIsCertifiedDuringAJunkFlood(t *testing.T) {
	c := cluster.Start(t, testenv.NewNetwork(t))
	ctx := t.Context()
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "flood-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ServiceAccounts(ns.Name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expiry := int64(600)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns.Name).CreateToken(ctx, "web", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{identity.Audience}, ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	realToken := []byte(tr.Status.Token)
	issuer, err := identity.IssuerOf(realToken)
	if err != nil {
		t.Fatal(err)
	}

	var reviews, realReviews atomic.Int64
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = 5, 10 // client-go's defaults: the flood must not need more
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return countTokenReviews{next: rt, count: &reviews, token: realToken, tokenCounts: &realReviews}
	})
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	ctrl := identitytest.Start(t, identitytest.Options{Tokens: identity.NewTokenReviews(client, identity.TokenReviewConfig{
		TrustDomain: td, Audience: identity.Audience, Issuers: []string{issuer},
	})})
	id := ctrl.WorkloadID(ns.Name, "web")

	// The flood comes from 127.0.0.2, another client than the pod's.
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	floodConn, err := grpc.NewClient("passthrough:///"+ctrl.Addr,
		grpc.WithTransportCredentials(credentials.NewTLS(proxyidentity.ControllerTLS([]*x509.Certificate{ctrl.Anchor}, meshid.Controller(td)))),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	defer floodConn.Close()
	flood := identitypb.NewIdentityClient(floodConn)
	forgeryKey := identitytest.NewKey(t)
	csr := newCSR(t, id)
	floodCtx, stopFlood := context.WithCancel(ctx)
	floodStart := time.Now()
	var (
		wg                            sync.WaitGroup
		sent, limited, forgedReviewed atomic.Int64
		unexpected                    sync.Map
	)
	for worker := range 8 {
		wg.Go(func() {
			for n := 0; floodCtx.Err() == nil; n++ {
				token := []byte(fmt.Sprintf("junk-%d-%d", worker, n))
				if n%2 == 1 { // the right shape, issuer and audience, a signature of no one's
					forged, err := forge(forgeryKey, issuer, fmt.Sprintf("forged-%d-%d", worker, n))
					if err != nil {
						unexpected.Store("forging: "+err.Error(), true)
						return
					}
					token = forged
				}
				_, err := flood.Certify(floodCtx, &identitypb.CertifyRequest{Identity: id.String(), Token: token, CertificateSigningRequest: csr})
				if floodCtx.Err() != nil {
					return
				}
				sent.Add(1)
				st := status.Convert(err)
				switch {
				case st.Code() == codes.ResourceExhausted:
					limited.Add(1)
				case st.Code() == codes.Unauthenticated && strings.Contains(st.Message(), "not authenticated by the Kubernetes API"):
					forgedReviewed.Add(1)
				case st.Code() == codes.Unauthenticated:
				default:
					unexpected.Store(st.Code().String()+": "+st.Message(), true)
				}
			}
		})
	}
	time.Sleep(2 * time.Second) // the flood is on

	for i := range 3 {
		callCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := ctrl.Client.Certify(callCtx, &identitypb.CertifyRequest{Identity: id.String(), Token: realToken, CertificateSigningRequest: newCSR(t, id)})
		cancel()
		if err != nil {
			stopFlood()
			wg.Wait()
			t.Fatalf("the pod's Certify %d during the flood: %v", i+1, err)
		}
	}
	stopFlood()
	wg.Wait()
	unexpected.Range(func(k, _ any) bool { t.Errorf("flood answer: %v", k); return true })
	t.Logf("flood: %d calls, %d rate-limited, %d forgeries reviewed; %d TokenReviews in all",
		sent.Load(), limited.Load(), forgedReviewed.Load(), reviews.Load())
	if limited.Load() == 0 {
		t.Errorf("no flood call was rate-limited")
	}
	if n := realReviews.Load(); n != 1 {
		t.Errorf("the real token was reviewed %d times, want once: its verdict is cached", n)
	}
	// A forgery in flight when the flood stopped may have been reviewed
	// without its caller hearing back: at most one per flood worker.
	if forged := reviews.Load() - realReviews.Load(); forged < forgedReviewed.Load() || forged > forgedReviewed.Load()+8 {
		t.Errorf("%d TokenReviews of forgeries, want %d (one per forgery let through) plus at most 8 in flight at the end", forged, forgedReviewed.Load())
	}
	if allowed := int64(identity.DefaultCertifyBurst) + int64(identity.DefaultCertifyRate*time.Since(floodStart).Seconds()) + 1; forgedReviewed.Load() > allowed {
		t.Errorf("%d forgeries reviewed, more than the per-client limit allows (%d)", forgedReviewed.Load(), allowed)
	}
}

// forge signs a token shaped like the cluster's service-account tokens
// with a key the API server does not know.
func forge(key *ecdsa.PrivateKey, issuer, subject string) ([]byte, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	token, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: issuer, Subject: subject, Audience: jwt.Audience{identity.Audience},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour)),
	}).Serialize()
	return []byte(token), err
}
