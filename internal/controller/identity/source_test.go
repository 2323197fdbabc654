package identity_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/pki"
	proxyidentity "github.com/skeinmesh/skein/internal/proxy/identity"
)

func TestNewIssuerFilesTakeEffectWithoutRestart(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	id := ctrl.WorkloadID("demo", "web")
	first := ctrl.Source.Issuer().Certificate()

	second := ctrl.WriteIssuer(t, ctrl.Anchor, ctrl.AnchorKey)
	identitytest.Eventually(t, 5*time.Second, func() error {
		return signedBy(parseChain(t, certify(t, ctrl, id, mintToken(t, ctrl, id), newCSR(t, id)))[0], second)
	})
	if err := signedBy(parseChain(t, certify(t, ctrl, id, mintToken(t, ctrl, id), newCSR(t, id)))[0], first); err == nil {
		t.Fatal("still signing with the first issuer")
	}
	// The controller's own serving certificate follows the issuer too.
	conn, err := tls.Dial("tcp", ctrl.Addr, proxyidentity.ControllerTLS([]*x509.Certificate{ctrl.Anchor}, meshid.Controller(ctrl.TrustDomain)))
	if err != nil {
		t.Fatalf("dialing the controller after the issuer changed: %v", err)
	}
	serving := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if err := signedBy(serving, second); err != nil {
		t.Errorf("controller serving certificate: %v", err)
	}

	// An issuer from another anchor is refused and the second one kept.
	otherAnchor, otherKey := identitytest.NewAnchor(t, ctrl.TrustDomain)
	ctrl.WriteIssuer(t, otherAnchor, otherKey)
	identitytest.Eventually(t, 5*time.Second, func() error {
		if !ctrl.Logs.Contains("not signed by a trust anchor") {
			return fmt.Errorf("no rejection logged")
		}
		return nil
	})
	leaf := parseChain(t, certify(t, ctrl, id, mintToken(t, ctrl, id), newCSR(t, id)))[0]
	if err := signedBy(leaf, second); err != nil {
		t.Fatalf("after a bad issuer was written: %v", err)
	}
}

func signedBy(leaf, issuer *x509.Certificate) error {
	if err := leaf.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("leaf not signed by issuer %x: %w", issuer.SerialNumber, err)
	}
	return nil
}

func TestParseIssuerRejectsBadMaterial(t *testing.T) {
	now := time.Now()
	anchorKey := identitytest.NewKey(t)
	anchor, _ := pki.NewTrustAnchor("cluster.local", anchorKey, time.Hour, now)
	otherAnchorKey := identitytest.NewKey(t)
	otherAnchor, _ := pki.NewTrustAnchor("cluster.local", otherAnchorKey, time.Hour, now)
	issuerKey := identitytest.NewKey(t)
	issuer, _ := pki.NewIssuer("cluster.local", issuerKey, anchor, anchorKey, 10*time.Minute, now)
	foreign, _ := pki.NewIssuer("cluster.local", issuerKey, otherAnchor, otherAnchorKey, 10*time.Minute, now)
	expired, _ := pki.NewIssuer("cluster.local", issuerKey, anchor, anchorKey, -time.Second, now)
	keyPEM, _ := pki.EncodePrivateKey(issuerKey)
	otherKeyPEM, _ := pki.EncodePrivateKey(identitytest.NewKey(t))
	anchorPEM := pki.EncodeCertificates(anchor)

	if _, err := identity.ParseIssuer(pki.EncodeCertificates(issuer), keyPEM, anchorPEM, now); err != nil {
		t.Fatalf("good issuer refused: %v", err)
	}
	tests := []struct {
		name          string
		cert, key, ca []byte
		want          string
	}{
		{"not signed by the anchor", pki.EncodeCertificates(foreign), keyPEM, anchorPEM, "not signed by a trust anchor"},
		{"expired", pki.EncodeCertificates(expired), keyPEM, anchorPEM, "not now"},
		{"key mismatch", pki.EncodeCertificates(issuer), otherKeyPEM, anchorPEM, "does not match"},
		{"no key", pki.EncodeCertificates(issuer), nil, anchorPEM, "tls.key"},
		{"no anchors", pki.EncodeCertificates(issuer), keyPEM, nil, "ca.crt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := identity.ParseIssuer(tt.cert, tt.key, tt.ca, now)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestSecretSourceFollowsSecret(t *testing.T) {
	now := time.Now()
	anchorKey := identitytest.NewKey(t)
	anchor, _ := pki.NewTrustAnchor("cluster.local", anchorKey, time.Hour, now)
	secretFor := func(t *testing.T) (*corev1.Secret, *x509.Certificate) {
		key := identitytest.NewKey(t)
		issuer, err := pki.NewIssuer("cluster.local", key, anchor, anchorKey, 10*time.Minute, now)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, _ := pki.EncodePrivateKey(key)
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "skein", Name: "skein-identity-issuer"},
			Data: map[string][]byte{
				"tls.crt": pki.EncodeCertificates(issuer), "tls.key": keyPEM, "ca.crt": pki.EncodeCertificates(anchor),
			},
		}, issuer
	}
	first, firstIssuer := secretFor(t)
	// The Secret does not exist yet when the controller starts (cert-manager
	// writes it a moment after its Certificate is applied): the source
	// waits for it, without an issuer, instead of failing.
	client := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	src, err := identity.NewSecretSource(ctx, client, "skein", "skein-identity-issuer", log, nil)
	if err != nil {
		t.Fatalf("a Secret not made yet: %v, want the source to wait for it", err)
	}
	if src.Issuer() != nil {
		t.Fatal("an issuer before the Secret exists")
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = src.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if _, err := client.CoreV1().Secrets("skein").Create(ctx, first, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	identitytest.Eventually(t, 5*time.Second, func() error {
		if iss := src.Issuer(); iss == nil || !iss.Certificate().Equal(firstIssuer) {
			return fmt.Errorf("first issuer not loaded")
		}
		return nil
	})

	second, secondIssuer := secretFor(t)
	// The watch may start after the update; keep updating until seen.
	identitytest.Eventually(t, 5*time.Second, func() error {
		if src.Issuer().Certificate().Equal(secondIssuer) {
			return nil
		}
		_, err := client.CoreV1().Secrets("skein").Update(ctx, second, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		return fmt.Errorf("second issuer not loaded")
	})
}
