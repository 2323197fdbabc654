package pki

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"time"
)

// ClockSkew is how far before "now" a new certificate's NotBefore is set, so
// that peers whose clocks lag a little accept it at once.
const ClockSkew = time.Minute

// NewTrustAnchor makes a self-signed root CA for trustDomain (a name such as
// "cluster.local") valid for ttl from now.
func NewTrustAnchor(trustDomain string, key *ecdsa.PrivateKey, ttl time.Duration, now time.Time) (*x509.Certificate, error) {
	template, err := caTemplate("skein trust anchor "+trustDomain, trustDomain, ttl, now)
	if err != nil {
		return nil, err
	}
	template.MaxPathLen = 1
	return createCertificate(template, template, key, key)
}

// NewIssuer makes an intermediate CA signed by the anchor, able to sign
// only leaf certificates (MaxPathLen 0), valid for ttl from now but never
// past the anchor's own expiry.
func NewIssuer(trustDomain string, key *ecdsa.PrivateKey, anchor *x509.Certificate, anchorKey *ecdsa.PrivateKey, ttl time.Duration, now time.Time) (*x509.Certificate, error) {
	template, err := caTemplate("skein issuer "+trustDomain, trustDomain, ttl, now)
	if err != nil {
		return nil, err
	}
	template.MaxPathLen = 0
	template.MaxPathLenZero = true
	if template.NotAfter.After(anchor.NotAfter) {
		template.NotAfter = anchor.NotAfter
	}
	return createCertificate(template, anchor, key, anchorKey)
}

func caTemplate(commonName, trustDomain string, ttl time.Duration, now time.Time) (*x509.Certificate, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: trustDomain}},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(ttl),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}, nil
}

func createCertificate(template, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, template, parent, key.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("signing %q: %w", template.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing new certificate %q: %w", template.Subject.CommonName, err)
	}
	return cert, nil
}
