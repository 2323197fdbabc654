package pki

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net/url"
)

// NewCSR returns a DER PKCS#10 request for key with id (a SPIFFE ID) as its
// only URI SAN. The issuer decides what the certificate contains; the URI
// is there for humans inspecting the request.
func NewCSR(key *ecdsa.PrivateKey, id *url.URL) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
	if err != nil {
		return nil, fmt.Errorf("creating certificate request for %s: %w", id, err)
	}
	return der, nil
}
