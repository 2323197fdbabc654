package identity_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/pki"
	"github.com/skeinmesh/skein/internal/proxy/identity"
)

const alpn = "skein.io/test"

// server accepts mesh connections on 127.0.0.1 until the test ends; each
// handshake's result goes to the returned channel.
func server(t *testing.T, cfg *tls.Config) (string, <-chan handshake) {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan handshake, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			tc := conn.(*tls.Conn)
			err = tc.Handshake()
			if err == nil {
				_, err = tc.Write([]byte("ok"))
			}
			results <- handshake{tc.ConnectionState(), err}
			tc.Close()
		}
	}()
	t.Cleanup(func() { lis.Close(); <-done })
	return lis.Addr().String(), results
}

type handshake struct {
	state tls.ConnectionState
	err   error
}

// dial connects and reads the server's "ok", so a client certificate the
// server refuses (reported after the client's side of a TLS 1.3 handshake
// is done) shows up as an error too.
func dial(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return tls.ConnectionState{}, fmt.Errorf("reading from server: %w", err)
	}
	return conn.ConnectionState(), nil
}

func TestMutualTLSBetweenWorkloads(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	webID, apiID := ctrl.WorkloadID("demo", "web"), ctrl.WorkloadID("demo", "api")
	web, api := ctrl.RunLocal(t, webID), ctrl.RunLocal(t, apiID)

	addr, results := server(t, api.ServerTLS([]string{alpn}))
	state, err := dial(addr, web.ClientTLS(apiID, []string{alpn}))
	if err != nil {
		t.Fatalf("web -> api: %v", err)
	}
	if got, err := identity.PeerID(state); err != nil || got != apiID {
		t.Errorf("client sees server %s (%v), want %s", got, err, apiID)
	}
	if state.Version != tls.VersionTLS13 || state.NegotiatedProtocol != alpn {
		t.Errorf("version %x ALPN %q, want TLS 1.3 and %q", state.Version, state.NegotiatedProtocol, alpn)
	}
	srv := <-results
	if got, err := identity.PeerID(srv.state); srv.err != nil || err != nil || got != webID {
		t.Errorf("server sees client %s (%v, %v), want %s", got, srv.err, err, webID)
	}

	// Expecting another identity than the server has fails the handshake.
	if _, err := dial(addr, web.ClientTLS(ctrl.WorkloadID("demo", "db"), []string{alpn})); err == nil {
		t.Error("handshake succeeded though the server is not the expected identity")
	}
	<-results
}

func TestMutualTLSRefusesOtherTrustAnchor(t *testing.T) {
	ours := identitytest.Start(t, identitytest.Options{})
	theirs := identitytest.Start(t, identitytest.Options{}) // same trust domain name, other anchor
	webID, apiID := ours.WorkloadID("demo", "web"), ours.WorkloadID("demo", "api")
	web := ours.RunLocal(t, webID)
	api := ours.RunLocal(t, apiID)
	impostor := theirs.RunLocal(t, webID)
	fakeAPI := theirs.RunLocal(t, apiID)

	addr, results := server(t, api.ServerTLS(nil))
	if _, err := dial(addr, impostor.ClientTLS(apiID, nil)); err == nil {
		t.Error("server accepted a client certified under another anchor")
	}
	if srv := <-results; srv.err == nil {
		t.Error("server handshake succeeded with a foreign client certificate")
	}

	fakeAddr, fakeResults := server(t, fakeAPI.ServerTLS(nil))
	if _, err := dial(fakeAddr, web.ClientTLS(apiID, nil)); err == nil {
		t.Error("client accepted a server certified under another anchor")
	}
	<-fakeResults
}

func TestRotationIsInvisibleToTLSConfigs(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 3 s certificate to be renewed")
	}
	ctrl := identitytest.Start(t, identitytest.Options{Lifetime: 3 * time.Second})
	webID, apiID := ctrl.WorkloadID("demo", "web"), ctrl.WorkloadID("demo", "api")
	web, api := ctrl.RunLocal(t, webID), ctrl.RunLocal(t, apiID)

	// One listener and one client config for the whole test.
	addr, results := server(t, api.ServerTLS(nil))
	clientTLS := web.ClientTLS(apiID, nil)
	before, err := dial(addr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	<-results
	old := before.PeerCertificates[0]

	identitytest.Eventually(t, 10*time.Second, func() error {
		leaf, _ := api.Certificate()
		if leaf.SerialNumber.Cmp(old.SerialNumber) == 0 {
			return errors.New("api's certificate not renewed yet")
		}
		return nil
	})
	renewed, _ := api.Certificate()
	// Issued (NotBefore is backdated by the skew allowance) before the old
	// one expired: renewal came early, not after a lapse.
	if issued := renewed.NotBefore.Add(pki.ClockSkew); !issued.Before(old.NotAfter) {
		t.Errorf("renewed certificate issued at %s, after the old one expired at %s", issued, old.NotAfter)
	}

	after, err := dial(addr, clientTLS)
	if err != nil {
		t.Fatalf("handshake after rotation: %v", err)
	}
	srv := <-results
	got := after.PeerCertificates[0]
	if leaf, _ := api.Certificate(); got.SerialNumber.Cmp(old.SerialNumber) == 0 || got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("server presented serial %x, want the renewed %x", got.SerialNumber, leaf.SerialNumber)
	}
	if id, err := identity.PeerID(srv.state); err != nil || id != webID {
		t.Errorf("server sees client %s (%v), want %s", id, err, webID)
	}
}

func TestPeerIDNeedsACompletedHandshake(t *testing.T) {
	if _, err := identity.PeerID(tls.ConnectionState{}); err == nil {
		t.Error("PeerID of an unfinished handshake succeeded")
	}
}

// TestMutualTLSRefusesKeysTheMeshDoesNotIssue presents client certificates
// signed by the mesh's own issuer but for keys the identity service never
// certifies: the server refuses each before checking its signature, and
// says what the key was.
func TestMutualTLSRefusesKeysTheMeshDoesNotIssue(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	webID, apiID := ctrl.WorkloadID("demo", "web"), ctrl.WorkloadID("demo", "api")
	api := ctrl.RunLocal(t, apiID)
	addr, results := server(t, api.ServerTLS([]string{alpn}))

	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, c := range []struct {
		key  crypto.Signer
		want string // in the server's error; "" accepts
	}{
		{rsa1024, "peer certificate has an RSA 1024-bit key; the mesh uses only ECDSA P-256"},
		{rsa2048, "peer certificate has an RSA 2048-bit key; the mesh uses only ECDSA P-256"},
		{ed, "peer certificate has an Ed25519 key; the mesh uses only ECDSA P-256"},
		{p384, "peer certificate has an ECDSA P-384 key; the mesh uses only ECDSA P-256"},
		{identitytest.NewKey(t), ""}, // the control: the same certificate with a mesh key
	} {
		cfg := &tls.Config{
			Certificates:       []tls.Certificate{identitytest.IssueLeaf(t, ctrl.Dir, webID, c.key)},
			NextProtos:         []string{alpn},
			InsecureSkipVerify: true, // the server's checks are under test
			MinVersion:         tls.VersionTLS13,
		}
		_, err := dial(addr, cfg)
		srv := <-results
		switch {
		case c.want == "" && (err != nil || srv.err != nil):
			t.Errorf("%T key: refused (client %v, server %v)", c.key, err, srv.err)
		case c.want != "" && (srv.err == nil || srv.err.Error() != c.want):
			t.Errorf("%T key: server handshake error %v, want %q", c.key, srv.err, c.want)
		case c.want != "" && (err == nil || !strings.HasSuffix(err.Error(), "remote error: tls: bad certificate")):
			t.Errorf("%T key: client got %v, want the bad_certificate alert", c.key, err)
		}
	}
}
