package pki_test

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/pki"
)

func TestParsePrivateKeyReadsPKCS8AndSEC1(t *testing.T) {
	key, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := pki.EncodePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	for name, data := range map[string][]byte{"PKCS#8": pkcs8, "SEC1": sec1} {
		got, err := pki.ParsePrivateKey(data)
		if err != nil || !got.Equal(key) {
			t.Errorf("%s: got %v, %v; want the original key", name, got, err)
		}
	}
	if _, err := pki.ParsePrivateKey([]byte("nothing")); err == nil {
		t.Error("parsed a key from garbage")
	}
}

func TestIssuerChainsToAnchorAndCannotSignCAs(t *testing.T) {
	now := time.Now()
	anchorKey, _ := pki.GenerateKey()
	anchor, err := pki.NewTrustAnchor("cluster.local", anchorKey, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	issuerKey, _ := pki.GenerateKey()
	issuer, err := pki.NewIssuer("cluster.local", issuerKey, anchor, anchorKey, 2*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := issuer.CheckSignatureFrom(anchor); err != nil {
		t.Fatalf("issuer not signed by anchor: %v", err)
	}
	if !issuer.IsCA || issuer.MaxPathLen != 0 || !issuer.MaxPathLenZero {
		t.Errorf("issuer IsCA=%v MaxPathLen=%d zero=%v, want a CA that signs only leaves", issuer.IsCA, issuer.MaxPathLen, issuer.MaxPathLenZero)
	}
	if issuer.NotAfter.After(anchor.NotAfter) {
		t.Errorf("issuer outlives anchor: %s > %s", issuer.NotAfter, anchor.NotAfter)
	}
	certs, err := pki.ParseCertificates(pki.EncodeCertificates(issuer, anchor))
	if err != nil || len(certs) != 2 || !certs[0].Equal(issuer) || !certs[1].Equal(anchor) {
		t.Errorf("PEM round trip: %d certificates, %v", len(certs), err)
	}
	if _, err := pki.ParseCertificates([]byte("x")); err == nil || !strings.Contains(err.Error(), "no CERTIFICATE") {
		t.Errorf("ParseCertificates(garbage) = %v", err)
	}
}
