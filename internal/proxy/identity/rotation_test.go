package identity_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	ctlidentity "github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/pki"
	"github.com/skeinmesh/skein/internal/proxy/identity"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

// TestAnchorRotationReachesARunningProxy walks the three rotation steps on
// the controller's directory and checks that a running proxy with a 24 h
// certificate follows each: trusts both anchors, renews under the new
// issuer, trusts the new anchor alone and then refuses the old chain.
func TestAnchorRotationReachesARunningProxy(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	id := ctrl.WorkloadID("demo", "web")
	anchors, err := identity.NewAnchors(ctrl.TrustDomain, []*x509.Certificate{ctrl.Anchor}, ctrl.Log)
	if err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(t.TempDir(), "ca.crt")
	anchors.KeepIn(kept)
	conn, err := grpc.NewClient(ctrl.Addr, grpc.WithTransportCredentials(credentials.NewTLS(
		identity.ControllerTLSFrom(anchors, meshid.Controller(ctrl.TrustDomain)))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := identitypb.NewIdentityClient(conn)
	local, err := identity.New(identity.Config{
		Identity: id.String(), TokenFile: ctrl.TokenFile(t, id), Anchors: anchors, Client: client, Log: ctrl.Log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = local.Run(ctx) })
	wg.Go(func() { local.WatchTrustBundle(ctx, client) })
	defer func() { cancel(); wg.Wait() }()
	identitytest.Eventually(t, 10*time.Second, local.Ready)

	oldLeaf := identitytest.IssueLeaf(t, ctrl.Dir, ctrl.WorkloadID("demo", "old"), identitytest.NewKey(t))
	oldAnchor := pki.Fingerprint(ctrl.Anchor)
	newAnchor, newKey := identitytest.NewAnchor(t, ctrl.TrustDomain)
	keyDir := t.TempDir()
	newCert, newKeyFile := filepath.Join(keyDir, "new.crt"), filepath.Join(keyDir, "new.key")
	keyPEM, err := pki.EncodePrivateKey(newKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newCert, pki.EncodeCertificates(newAnchor), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newKeyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	trusts := func(want ...string) func() error {
		return func() error {
			if got := anchors.Fingerprints(); !slices.Equal(got, want) {
				return fmt.Errorf("proxy trusts %v, want %v", got, want)
			}
			return nil
		}
	}

	if _, err := ctlidentity.BundleAnchor(t.Context(), ctlidentity.DirStore(ctrl.Dir), ctlidentity.BundleConfig{NewAnchorCert: newCert, NewAnchorKey: newKeyFile}); err != nil {
		t.Fatal(err)
	}
	identitytest.Eventually(t, 10*time.Second, trusts(oldAnchor, pki.Fingerprint(newAnchor)))

	if _, err := ctlidentity.RotateIssuer(ctlidentity.RotateConfig{AnchorCert: newCert, AnchorKey: newKeyFile, Dir: ctrl.Dir}); err != nil {
		t.Fatal(err)
	}
	identitytest.Eventually(t, identity.IssuerRollSpread+10*time.Second, func() error {
		leaf, _ := local.Certificate()
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool(newAnchor), Intermediates: pool(issuerOf(t, ctrl.Dir)),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("certificate does not chain to the new anchor yet: %w", err)
		}
		return nil
	})
	if err := presentTo(local, oldLeaf); err != nil {
		t.Errorf("before the drop, a certificate of the old chain was refused: %v", err)
	}

	if _, _, err := ctlidentity.DropAnchors(t.Context(), ctlidentity.DirStore(ctrl.Dir)); err != nil {
		t.Fatal(err)
	}
	identitytest.Eventually(t, 10*time.Second, trusts(pki.Fingerprint(newAnchor)))
	if err := presentTo(local, oldLeaf); err == nil {
		t.Error("after the drop, a certificate of the old chain was taken")
	}
	newLeaf := identitytest.IssueLeaf(t, ctrl.Dir, ctrl.WorkloadID("demo", "new"), identitytest.NewKey(t))
	if err := presentTo(local, newLeaf); err != nil {
		t.Errorf("after the drop, a certificate of the new chain was refused: %v", err)
	}
	if !ctrl.Logs.Contains("trust anchors changed") {
		t.Error("no trust anchor change logged")
	}

	// A proxy restarted now (its container; the pod and what it was
	// injected with stay) starts from the anchors it kept, and is
	// certified; from the injected old anchor alone it could not reach
	// the controller, whose certificate now chains to the new one.
	restarted, ok := identity.LoadKept(kept, ctrl.Log)
	if !ok || len(restarted) != 1 || !restarted[0].Equal(newAnchor) {
		t.Fatalf("kept anchors %v (ok %v), want the new anchor alone", restarted, ok)
	}
	if err := certifiedFrom(t, ctrl, restarted); err != nil {
		t.Errorf("a proxy restarted with the kept anchors: %v", err)
	}
	if err := certifiedFrom(t, ctrl, []*x509.Certificate{ctrl.Anchor}); err == nil {
		t.Error("a proxy restarted with the old anchor alone was certified: the test proves nothing")
	}
}

// certifiedFrom starts a proxy identity that trusts anchors and reports
// whether it gets a certificate from ctrl within 5 s.
func certifiedFrom(t *testing.T, ctrl *identitytest.Controller, certs []*x509.Certificate) error {
	anchors, err := identity.NewAnchors(ctrl.TrustDomain, certs, ctrl.Log)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(ctrl.Addr, grpc.WithTransportCredentials(credentials.NewTLS(
		identity.ControllerTLSFrom(anchors, meshid.Controller(ctrl.TrustDomain)))))
	if err != nil {
		return err
	}
	defer conn.Close()
	id := ctrl.WorkloadID("demo", "restarted")
	local, err := identity.New(identity.Config{
		Identity: id.String(), TokenFile: ctrl.TokenFile(t, id), Anchors: anchors, Client: identitypb.NewIdentityClient(conn), Log: ctrl.Log,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = local.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := local.Ready()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAnchorsRefuseLeavesAndNothing(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	if _, err := identity.NewAnchors(ctrl.TrustDomain, nil, nil); err == nil {
		t.Error("an empty set of anchors was taken")
	}
	leaf := identitytest.IssueLeaf(t, ctrl.Dir, ctrl.WorkloadID("demo", "web"), identitytest.NewKey(t))
	parsed, err := x509.ParseCertificate(leaf.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := identity.NewAnchors(ctrl.TrustDomain, []*x509.Certificate{parsed}, nil); err == nil {
		t.Error("a leaf certificate was taken as an anchor")
	}
}

// presentTo presents cert to local's mesh server over a pipe and returns
// the server's verdict.
func presentTo(local *identity.Local, cert tls.Certificate) error {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	server := tls.Server(c1, local.ServerTLS([]string{"skein/http"}))
	client := tls.Client(c2, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
		NextProtos: []string{"skein/http"}, MinVersion: tls.VersionTLS13})
	done := make(chan error, 1)
	go func() { done <- client.Handshake(); _, _ = client.Read(make([]byte, 1)) }()
	c1.SetDeadline(time.Now().Add(10 * time.Second))
	err := server.Handshake()
	c1.Close()
	if cerr := <-done; err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		return fmt.Errorf("client: %w", cerr)
	}
	return err
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func issuerOf(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ctlidentity.IssuerCertFile))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}
