package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/skeinmesh/skein/internal/atomicfile"
	"github.com/skeinmesh/skein/internal/pki"
)

// An anchor rotation in an issuer directory (what the controller's
// -identity-dir serves) is three edits of its files, each safe on its own
// while proxies follow the controller's trust bundle:
//
//  1. BundleAnchor: ca.crt holds the old and the new anchor; the issuer
//     is unchanged. Proxies learn the new anchor (WatchTrustBundle).
//  2. RotateIssuer with the new anchor: a new issuer under it; proxies
//     renew under it within IssuerRollSpread.
//  3. DropAnchors: ca.crt keeps only the anchors the issuer chains to.

// BundleConfig says which new anchor to add.
type BundleConfig struct {
	// NewAnchorCert and NewAnchorKey are PEM files of the new anchor. When
	// neither exists a new anchor is made (for the trust domain of the
	// current one) and written there, the key 0600: keep it offline after
	// the issue step.
	NewAnchorCert, NewAnchorKey string
	AnchorTTL                   time.Duration // for a new anchor; default DefaultAnchorTTL
}

// RotationState is what an issuer store holds, for the CLI.
type RotationState struct {
	Anchors []*x509.Certificate // ca.crt, in order
	Issuer  *x509.Certificate   // tls.crt's first certificate
	// IssuerAnchor is the anchor in Anchors that the issuer chains to.
	IssuerAnchor *x509.Certificate
	// NewAnchor is the anchor added (BundleAnchor) or loaded.
	NewAnchor *x509.Certificate
}

// ReadRotationState reads the anchors and the issuer of store.
func ReadRotationState(ctx context.Context, store IssuerStore) (RotationState, error) {
	st, _, err := loadRotation(ctx, store)
	return st, err
}

func loadRotation(ctx context.Context, store IssuerStore) (RotationState, IssuerPEM, error) {
	var st RotationState
	m, err := store.Load(ctx)
	if err != nil {
		return st, m, err
	}
	if m.Anchors == nil {
		return st, m, fmt.Errorf("%s has no %s", store, TrustAnchorFile)
	}
	if st.Anchors, err = pki.ParseCertificates(m.Anchors); err != nil {
		return st, m, fmt.Errorf("%s: %s: %w", store, TrustAnchorFile, err)
	}
	issuers, err := pki.ParseCertificates(m.Cert)
	if err != nil {
		return st, m, fmt.Errorf("%s: %s: %w", store, IssuerCertFile, err)
	}
	st.Issuer = issuers[0]
	for _, a := range st.Anchors {
		if st.Issuer.Equal(a) || st.Issuer.CheckSignatureFrom(a) == nil {
			st.IssuerAnchor = a
		}
	}
	if st.IssuerAnchor == nil {
		return st, m, fmt.Errorf("%s: %s is not signed by any anchor in %s", store, IssuerCertFile, TrustAnchorFile)
	}
	return st, m, nil
}

// BundleAnchor adds a new anchor beside the current ones in the store's
// ca.crt. Adding one already there changes nothing but writes the store
// again (which copies the anchors where a failed run left them unequal).
func BundleAnchor(ctx context.Context, store IssuerStore, cfg BundleConfig) (RotationState, error) {
	st, m, err := loadRotation(ctx, store)
	if err != nil {
		return st, err
	}
	anchor, err := loadOrMakeAnchor(cfg, st.IssuerAnchor)
	if err != nil {
		return st, err
	}
	st.NewAnchor = anchor
	if !containsCert(st.Anchors, anchor) {
		st.Anchors = append(st.Anchors, anchor)
	}
	m.Anchors = pki.EncodeCertificates(st.Anchors...)
	return st, store.Save(ctx, m)
}

func loadOrMakeAnchor(cfg BundleConfig, current *x509.Certificate) (*x509.Certificate, error) {
	if cfg.NewAnchorCert == "" || cfg.NewAnchorKey == "" {
		return nil, errors.New("the new anchor's certificate and key files are both required")
	}
	certPEM, certErr := os.ReadFile(cfg.NewAnchorCert)
	keyPEM, keyErr := os.ReadFile(cfg.NewAnchorKey)
	switch {
	case certErr == nil && keyErr == nil:
		certs, err := pki.ParseCertificates(certPEM)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.NewAnchorCert, err)
		}
		key, err := pki.ParsePrivateKey(keyPEM)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.NewAnchorKey, err)
		}
		if !key.PublicKey.Equal(certs[0].PublicKey) {
			return nil, fmt.Errorf("%s is not the key of the anchor in %s", cfg.NewAnchorKey, cfg.NewAnchorCert)
		}
		if !certs[0].IsCA {
			return nil, fmt.Errorf("%s is not a CA certificate", cfg.NewAnchorCert)
		}
		return certs[0], nil
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, certErr
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, keyErr
	default:
		return nil, fmt.Errorf("only one of %s and %s exists: give both (an anchor to use) or neither (one is made)", cfg.NewAnchorCert, cfg.NewAnchorKey)
	}
	if len(current.URIs) != 1 {
		return nil, errors.New("the current anchor names no trust domain")
	}
	ttl := cfg.AnchorTTL
	if ttl == 0 {
		ttl = DefaultAnchorTTL
	}
	key, err := pki.GenerateKey()
	if err != nil {
		return nil, err
	}
	anchor, err := pki.NewTrustAnchor(current.URIs[0].Host, key, ttl, time.Now())
	if err != nil {
		return nil, err
	}
	keyPEM, err = pki.EncodePrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(cfg.NewAnchorKey, keyPEM, 0o600); err != nil {
		return nil, err
	}
	return anchor, atomicfile.Write(cfg.NewAnchorCert, pki.EncodeCertificates(anchor), 0o644)
}

// DropAnchors leaves in the store's ca.crt only the anchor the issuer
// chains to: the last step, once every proxy's certificate comes from that
// issuer. It returns the state after and the anchors dropped.
func DropAnchors(ctx context.Context, store IssuerStore) (RotationState, []*x509.Certificate, error) {
	st, m, err := loadRotation(ctx, store)
	if err != nil {
		return st, nil, err
	}
	var dropped []*x509.Certificate
	for _, a := range st.Anchors {
		if a != st.IssuerAnchor {
			dropped = append(dropped, a)
		}
	}
	st.Anchors = []*x509.Certificate{st.IssuerAnchor}
	m.Anchors = pki.EncodeCertificates(st.IssuerAnchor)
	return st, dropped, store.Save(ctx, m)
}
