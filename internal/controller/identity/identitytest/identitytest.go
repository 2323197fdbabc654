// Package identitytest runs a real identity service for tests: trust
// material in a temporary directory, the Certify service on a loopback gRPC
// server with its own serving certificate, join tokens, and proxy-side
// identities certified by it. Only tests import it.
package identitytest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/pki"
	proxyidentity "github.com/skeinmesh/skein/internal/proxy/identity"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

// Options tune the test controller.
type Options struct {
	TrustDomain string        // default "cluster.local"
	Lifetime    time.Duration // of issued certificates; default identity.DefaultLifetime
	ClockSkew   time.Duration // NotBefore backdating; default identity.DefaultClockSkew
	// Tokens, if set, checks tokens instead of the join-token key alone.
	Tokens identity.TokenValidator
	// CertifyRate and CertifyBurst limit Certify per client; zero keeps
	// the identity service's defaults.
	CertifyRate  float64
	CertifyBurst int
	// Dir, if set, holds trust material `skein identity generate` wrote
	// (ca.crt, tls.crt, tls.key, join-token.key) to serve instead of new
	// material; AnchorKey is then nil.
	Dir string
	// Registerer, if set, receives the identity service's metrics.
	Registerer prometheus.Registerer
}

// Controller is a running identity service and the material behind it.
type Controller struct {
	TrustDomain spiffeid.TrustDomain
	Dir         string // holds tls.crt, tls.key, ca.crt
	Anchor      *x509.Certificate
	AnchorKey   *ecdsa.PrivateKey
	JoinKey     *ecdsa.PrivateKey
	Source      *identity.DirSource
	Service     *identity.Service
	Addr        string
	Client      identitypb.IdentityClient
	Logs        *Logs
	Log         *slog.Logger // writes to Logs
}

// Start makes a trust anchor and issuer, and serves the identity service on
// 127.0.0.1 until the test ends.
func Start(t testing.TB, opts Options) *Controller {
	t.Helper()
	if opts.TrustDomain == "" {
		opts.TrustDomain = "cluster.local"
	}
	td := spiffeid.RequireTrustDomainFromString(opts.TrustDomain)
	c := &Controller{TrustDomain: td, Dir: opts.Dir, Logs: &Logs{}}
	if c.Dir == "" {
		c.Dir = t.TempDir()
		c.Anchor, c.AnchorKey = NewAnchor(t, td)
		c.WriteIssuer(t, c.Anchor, c.AnchorKey)
		c.JoinKey = NewKey(t)
	} else {
		c.loadDir(t)
	}

	log := slog.New(slog.NewTextHandler(c.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c.Log = log
	src, err := identity.NewDirSource(c.Dir, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Source = src
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = src.Run(ctx) })

	tokens := opts.Tokens
	if tokens == nil {
		tokens = identity.NewJoinTokens(&c.JoinKey.PublicKey, identity.Audience, nil)
	}
	svc, err := identity.NewService(identity.Config{
		TrustDomain:  td,
		Issuers:      src,
		Tokens:       tokens,
		Lifetime:     opts.Lifetime,
		ClockSkew:    opts.ClockSkew,
		CertifyRate:  opts.CertifyRate,
		CertifyBurst: opts.CertifyBurst,
		Registerer:   opts.Registerer,
		Log:          log,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Service = svc
	server := grpc.NewServer(grpc.Creds(credentials.NewTLS(svc.ServerTLS(meshid.Controller(td)))))
	svc.Register(server)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.Addr = lis.Addr().String()
	wg.Go(func() { _ = server.Serve(lis) })

	tlsConfig := proxyidentity.ControllerTLS([]*x509.Certificate{c.Anchor}, meshid.Controller(td))
	conn, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	if err != nil {
		t.Fatal(err)
	}
	c.Client = identitypb.NewIdentityClient(conn)
	t.Cleanup(func() {
		conn.Close()
		server.Stop()
		cancel()
		wg.Wait()
	})
	return c
}

func (c *Controller) loadDir(t testing.TB) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.Dir, identity.TrustAnchorFile))
	if err != nil {
		t.Fatal(err)
	}
	anchors, err := pki.ParseCertificates(data)
	if err != nil {
		t.Fatal(err)
	}
	c.Anchor = anchors[0]
	c.JoinKey, err = identity.LoadJoinTokenKey(filepath.Join(c.Dir, identity.JoinTokenKeyFile))
	if err != nil {
		t.Fatal(err)
	}
}

// NewAnchor makes a self-signed trust anchor for td.
func NewAnchor(t testing.TB, td spiffeid.TrustDomain) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := NewKey(t)
	anchor, err := pki.NewTrustAnchor(td.Name(), key, 30*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return anchor, key
}

// WriteIssuer makes a new issuer signed by anchor and writes it with
// c.Anchor as ca.crt into c.Dir, each file replaced atomically. It returns
// the new issuer certificate.
func (c *Controller) WriteIssuer(t testing.TB, anchor *x509.Certificate, anchorKey *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	key := NewKey(t)
	issuer, err := pki.NewIssuer(c.TrustDomain.Name(), key, anchor, anchorKey, 7*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		identity.TrustAnchorFile: pki.EncodeCertificates(c.Anchor),
		identity.IssuerKeyFile:   keyPEM,
		identity.IssuerCertFile:  pki.EncodeCertificates(issuer),
	} {
		tmp := filepath.Join(c.Dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(c.Dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return issuer
}

// WorkloadID is spiffe://<td>/ns/<namespace>/sa/<serviceAccount>.
func (c *Controller) WorkloadID(namespace, serviceAccount string) spiffeid.ID {
	return spiffeid.RequireFromSegments(c.TrustDomain, "ns", namespace, "sa", serviceAccount)
}

// TokenFile writes a join token for id, valid an hour, to a new file.
func (c *Controller) TokenFile(t testing.TB, id spiffeid.ID) string {
	t.Helper()
	token, err := identity.MintJoinToken(c.JoinKey, id, identity.Audience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// RunLocal starts a proxy identity for id certified by this controller and
// waits until it holds a certificate. It stops when the test ends.
func (c *Controller) RunLocal(t testing.TB, id spiffeid.ID) *proxyidentity.Local {
	t.Helper()
	local, err := proxyidentity.New(proxyidentity.Config{
		Identity:     id.String(),
		TokenFile:    c.TokenFile(t, id),
		TrustAnchors: []*x509.Certificate{c.Anchor},
		Client:       c.Client,
		Log:          c.Log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = local.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	Eventually(t, 10*time.Second, func() error { return local.Ready() })
	return local
}

// Eventually polls check until it returns nil, failing the test with the
// last error after timeout.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logs collects log output so tests can look for an event.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// Contains reports whether any log line so far contains s.
func (l *Logs) Contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}

// NewKey makes a P-256 key.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// IssueLeaf signs a one-hour certificate for id and key with the issuer in
// dir (tls.crt, tls.key, as `skein identity generate` writes them), the way
// the identity service would sign one for a P-256 key, but for any key:
// tests use it to present keys the identity service never certifies.
func IssueLeaf(t testing.TB, dir string, id spiffeid.ID, key crypto.Signer) tls.Certificate {
	t.Helper()
	cert, err := IssueLeafFrom(dir, id, key)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// IssueLeafFrom is IssueLeaf for code that has no testing.TB: the
// benchmarks, which tap a proxy as the controller would.
func IssueLeafFrom(dir string, id spiffeid.ID, key crypto.Signer) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "tls.key"))
	if err != nil {
		return tls.Certificate{}, err
	}
	chain, err := pki.ParseCertificates(certPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issuer certificate: %w", err)
	}
	issuerKey, err := pki.ParsePrivateKey(keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issuer key: %w", err)
	}
	serial, err := pki.NewSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{id.URL()}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, chain[0], key.Public(), issuerKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, nil
}
