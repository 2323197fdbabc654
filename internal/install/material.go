package install

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/pki"
)

// IdentityMaterial is the mesh's trust in PEM, the files `skein identity
// generate` writes.
type IdentityMaterial struct {
	TrustAnchorPEM  []byte // ca.crt
	IssuerCertPEM   []byte // tls.crt
	IssuerKeyPEM    []byte // tls.key
	JoinTokenKeyPEM []byte // join-token.key

	joinTokenPublicKeyPEM []byte // join-token.pub, derived by complete
}

// LoadIdentityDir reads the material `skein identity generate --out DIR`
// wrote, so that a second render keeps the mesh's trust. Files that are
// missing stay empty (and are generated, or refused, at render time).
func LoadIdentityDir(dir string) (IdentityMaterial, error) {
	var m IdentityMaterial
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{
		{identity.TrustAnchorFile, &m.TrustAnchorPEM},
		{identity.IssuerCertFile, &m.IssuerCertPEM},
		{identity.IssuerKeyFile, &m.IssuerKeyPEM},
		{identity.JoinTokenKeyFile, &m.JoinTokenKeyPEM},
	} {
		data, err := os.ReadFile(filepath.Join(dir, f.name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return IdentityMaterial{}, fmt.Errorf("reading identity material: %w", err)
		}
		*f.dst = data
	}
	return m, nil
}

// complete generates what is missing for mode and checks what was given.
func (m IdentityMaterial) complete(mode IdentityMode, trustDomain string, now time.Time) (IdentityMaterial, error) {
	if mode == IdentityGenerate {
		given := len(m.TrustAnchorPEM) > 0 || len(m.IssuerCertPEM) > 0 || len(m.IssuerKeyPEM) > 0
		if !given {
			var err error
			if m.TrustAnchorPEM, m.IssuerCertPEM, m.IssuerKeyPEM, err = newIssuer(trustDomain, now); err != nil {
				return m, fmt.Errorf("generating the identity issuer: %w", err)
			}
		}
		if _, err := identity.ParseIssuer(m.IssuerCertPEM, m.IssuerKeyPEM, m.TrustAnchorPEM, now); err != nil {
			return m, fmt.Errorf("identity issuer: %w", err)
		}
	} else if _, err := pki.ParseCertificates(m.TrustAnchorPEM); err != nil {
		return m, fmt.Errorf("trust anchor: %w", err)
	}
	if len(m.JoinTokenKeyPEM) == 0 {
		key, err := pki.GenerateKey()
		if err != nil {
			return m, err
		}
		if m.JoinTokenKeyPEM, err = pki.EncodePrivateKey(key); err != nil {
			return m, err
		}
	}
	joinKey, err := pki.ParsePrivateKey(m.JoinTokenKeyPEM)
	if err != nil {
		return m, fmt.Errorf("%s: %w", identity.JoinTokenKeyFile, err)
	}
	if m.joinTokenPublicKeyPEM, err = pki.EncodePublicKey(&joinKey.PublicKey); err != nil {
		return m, err
	}
	return m, nil
}

// newIssuer makes a trust anchor and an issuer under it, as `skein
// identity generate` does, but in memory; the anchor's key is dropped.
func newIssuer(trustDomain string, now time.Time) (anchorPEM, issuerPEM, issuerKeyPEM []byte, err error) {
	anchorKey, err := pki.GenerateKey()
	if err != nil {
		return nil, nil, nil, err
	}
	anchor, err := pki.NewTrustAnchor(trustDomain, anchorKey, identity.DefaultAnchorTTL, now)
	if err != nil {
		return nil, nil, nil, err
	}
	issuerKey, err := pki.GenerateKey()
	if err != nil {
		return nil, nil, nil, err
	}
	issuer, err := pki.NewIssuer(trustDomain, issuerKey, anchor, anchorKey, identity.DefaultIssuerTTL, now)
	if err != nil {
		return nil, nil, nil, err
	}
	if issuerKeyPEM, err = pki.EncodePrivateKey(issuerKey); err != nil {
		return nil, nil, nil, err
	}
	return pki.EncodeCertificates(anchor), pki.EncodeCertificates(issuer), issuerKeyPEM, nil
}

// WebhookTTL is the life of a generated webhook CA and serving certificate.
// Rendering again (and applying) makes new ones.
const WebhookTTL = 365 * 24 * time.Hour

// WebhookTLS is the proxy injector's serving certificate and the CA the API
// server checks it with (the webhook configuration's caBundle).
type WebhookTLS struct {
	CACertPEM []byte
	CertPEM   []byte
	KeyPEM    []byte
}

// WebhookDNSName is the name the API server calls the webhook by: the
// controller's Service.
func WebhookDNSName(namespace string) string {
	return ControllerName + "." + namespace + ".svc"
}

// complete generates the certificates when none were given and checks
// that the serving certificate is valid for the Service under the CA.
func (w WebhookTLS) complete(namespace string, now time.Time) (WebhookTLS, error) {
	if len(w.CACertPEM) == 0 && len(w.CertPEM) == 0 && len(w.KeyPEM) == 0 {
		var err error
		if w, err = NewWebhookTLS(namespace, now); err != nil {
			return w, fmt.Errorf("generating the webhook certificate: %w", err)
		}
	}
	if err := VerifyWebhookTLS(w.CACertPEM, w.CertPEM, w.KeyPEM, WebhookDNSName(namespace), now); err != nil {
		return w, fmt.Errorf("webhook certificate: %w", err)
	}
	return w, nil
}

// VerifyWebhookTLS checks that certPEM and keyPEM are a pair, and that the
// certificate is valid at now for dnsName under the CA in caPEM: what the
// API server will check when it calls the webhook.
func VerifyWebhookTLS(caPEM, certPEM, keyPEM []byte, dnsName string, now time.Time) error {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("tls.crt and tls.key: %w", err)
	}
	cas, err := pki.ParseCertificates(caPEM)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("tls.crt: %w", err)
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		DNSName:     dnsName,
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("serving certificate is not valid for %s under the CA bundle: %w", dnsName, err)
	}
	return nil
}

// NewWebhookTLS makes a small CA and a serving certificate under it for the
// controller's Service in namespace, valid for WebhookTTL from now.
func NewWebhookTLS(namespace string, now time.Time) (WebhookTLS, error) {
	caKey, err := pki.GenerateKey()
	if err != nil {
		return WebhookTLS{}, err
	}
	ca, err := signCert(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "skein webhook CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil, caKey, caKey, now)
	if err != nil {
		return WebhookTLS{}, err
	}
	key, err := pki.GenerateKey()
	if err != nil {
		return WebhookTLS{}, err
	}
	dnsName := WebhookDNSName(namespace)
	cert, err := signCert(&x509.Certificate{
		Subject:     pkix.Name{CommonName: dnsName},
		DNSNames:    []string{dnsName, dnsName + ".cluster.local", ControllerName + "." + namespace},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, key, caKey, now)
	if err != nil {
		return WebhookTLS{}, err
	}
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		return WebhookTLS{}, err
	}
	return WebhookTLS{CACertPEM: pki.EncodeCertificates(ca), CertPEM: pki.EncodeCertificates(cert), KeyPEM: keyPEM}, nil
}

// signCert signs template (self-signed when parent is nil), valid from a
// little before now for WebhookTTL.
func signCert(template, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey, now time.Time) (*x509.Certificate, error) {
	serial, err := pki.NewSerial()
	if err != nil {
		return nil, err
	}
	template.SerialNumber = serial
	template.NotBefore, template.NotAfter = now.Add(-pki.ClockSkew), now.Add(WebhookTTL)
	if parent == nil {
		parent = template
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, key.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("signing %q: %w", template.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}
