package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/pki"
)

// File names of issuer material, the layout cert-manager writes into a
// Secret (and so into a mounted directory).
const (
	IssuerCertFile  = "tls.crt" // issuer certificate, then its chain up to (optionally including) the anchor
	IssuerKeyFile   = "tls.key" // issuer private key, ECDSA P-256, PKCS#8 or SEC1 PEM
	TrustAnchorFile = "ca.crt"  // trust anchor(s)
)

// Issuer is one validated set of issuer material. It is immutable: a new
// issuer replaces it as a whole.
type Issuer struct {
	cert    *x509.Certificate
	chain   []*x509.Certificate // cert and its intermediates, anchors excluded
	key     *ecdsa.PrivateKey
	anchors []*x509.Certificate
}

// ParseIssuer validates issuer material in PEM: the key matches the
// certificate, the certificate is a CA valid at now, and it chains to one of
// the trust anchors.
func ParseIssuer(certPEM, keyPEM, anchorsPEM []byte, now time.Time) (*Issuer, error) {
	certs, err := pki.ParseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", IssuerCertFile, err)
	}
	key, err := pki.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", IssuerKeyFile, err)
	}
	anchors, err := pki.ParseCertificates(anchorsPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", TrustAnchorFile, err)
	}
	cert := certs[0]
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not match the public key of %s", IssuerKeyFile, IssuerCertFile)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: %q is not a CA certificate with keyCertSign", IssuerCertFile, cert.Subject)
	}
	if now.Before(cert.NotBefore) || !now.Before(cert.NotAfter) {
		return nil, fmt.Errorf("%s: issuer is valid from %s to %s, not now (%s)",
			IssuerCertFile, cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	// A self-signed issuer that is itself the anchor sends no chain.
	intermediates := withoutAnchors(certs[1:], anchors)
	chain := intermediates
	if !containsCert(anchors, cert) {
		chain = append([]*x509.Certificate{cert}, intermediates...)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         poolOf(anchors),
		Intermediates: poolOf(intermediates),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("%s is not signed by a trust anchor in %s: %w", IssuerCertFile, TrustAnchorFile, err)
	}
	return &Issuer{cert: cert, chain: chain, key: key, anchors: anchors}, nil
}

// Certificate is the issuer's own certificate.
func (i *Issuer) Certificate() *x509.Certificate { return i.cert }

// Chain is the issuer certificate and its intermediates up to, not
// including, the trust anchor: what goes beside a leaf it signs.
func (i *Issuer) Chain() []*x509.Certificate { return i.chain }

// TrustAnchors are the roots the issuer chains to.
func (i *Issuer) TrustAnchors() []*x509.Certificate { return i.anchors }

// errIssuerExpiring is returned when the issuer has too little life left to
// sign anything useful.
var errIssuerExpiring = errors.New("issuer certificate expires within the clock-skew allowance")

// sign issues a leaf certificate for pub with id as its only URI SAN, valid
// from now minus the clock-skew allowance (skew) to now plus lifetime, cut
// to the issuer's own expiry.
func (i *Issuer) sign(id spiffeid.ID, pub *ecdsa.PublicKey, lifetime, skew time.Duration, now time.Time) (*x509.Certificate, error) {
	serial, err := pki.NewSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(i.cert.NotAfter) {
		notAfter = i.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, errIssuerExpiring
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             now.Add(-skew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, i.cert, pub, i.key)
	if err != nil {
		return nil, fmt.Errorf("signing certificate for %s: %w", id, err)
	}
	return x509.ParseCertificate(der)
}

func withoutAnchors(certs, anchors []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, cert := range certs {
		if !containsCert(anchors, cert) {
			out = append(out, cert)
		}
	}
	return out
}

func containsCert(certs []*x509.Certificate, cert *x509.Certificate) bool {
	for _, c := range certs {
		if bytes.Equal(c.Raw, cert.Raw) {
			return true
		}
	}
	return false
}

func poolOf(certs []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, cert := range certs {
		pool.AddCert(cert)
	}
	return pool
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// AnchorFingerprints names anchors by the SHA-256 of their DER, in hex, for
// logs and for comparing what a proxy trusts with what the controller has.
func AnchorFingerprints(anchors []*x509.Certificate) []string {
	out := make([]string, len(anchors))
	for i, a := range anchors {
		out[i] = pki.Fingerprint(a)
	}
	return out
}
