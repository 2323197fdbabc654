package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/atomicfile"
	"github.com/skeinmesh/skein/internal/pki"
)

// Defaults for a new mesh's trust: the anchor outlives many issuers, and
// an issuer is rotated well before a year is up.
const (
	DefaultAnchorTTL = 365 * 24 * time.Hour
	DefaultIssuerTTL = 90 * 24 * time.Hour
)

// GenerateConfig says what trust material to make and where.
type GenerateConfig struct {
	TrustDomain spiffeid.TrustDomain
	Dir         string
	AnchorTTL   time.Duration // default DefaultAnchorTTL
	IssuerTTL   time.Duration // default DefaultIssuerTTL, cut to the anchor's life
	Force       bool          // overwrite existing files
	// AnchorKey, when set, is where the trust anchor's private key is
	// written (0600), so that later issuers can be made under the same
	// anchor (RotateIssuer). Keep it offline: the controller never needs it.
	// Empty discards the key: a new issuer then means a new anchor.
	AnchorKey string
}

// Generated names the files Generate wrote.
type Generated struct {
	TrustAnchor, IssuerCert, IssuerKey, JoinTokenKey, AnchorKey string
	AnchorExpires, IssuerExpires                                time.Time
}

// Generate makes a new mesh's trust: a self-signed trust anchor (ca.crt), an
// issuer signed by it (tls.crt, tls.key) and a join-token signing key
// (join-token.key), all ECDSA P-256. Keys are written 0600. Existing files
// are not overwritten unless cfg.Force is set; nothing is written if any
// step fails before writing.
func Generate(cfg GenerateConfig) (Generated, error) {
	if cfg.TrustDomain.IsZero() {
		return Generated{}, errors.New("generate: trust domain is required")
	}
	if cfg.AnchorTTL == 0 {
		cfg.AnchorTTL = DefaultAnchorTTL
	}
	if cfg.IssuerTTL == 0 {
		cfg.IssuerTTL = DefaultIssuerTTL
	}
	if cfg.AnchorTTL < 0 || cfg.IssuerTTL < 0 {
		return Generated{}, errors.New("generate: lifetimes must be positive")
	}
	out := Generated{
		TrustAnchor:  filepath.Join(cfg.Dir, TrustAnchorFile),
		IssuerCert:   filepath.Join(cfg.Dir, IssuerCertFile),
		IssuerKey:    filepath.Join(cfg.Dir, IssuerKeyFile),
		JoinTokenKey: filepath.Join(cfg.Dir, JoinTokenKeyFile),
		AnchorKey:    cfg.AnchorKey,
	}
	paths := []string{out.TrustAnchor, out.IssuerCert, out.IssuerKey, out.JoinTokenKey}
	if cfg.AnchorKey != "" {
		paths = append(paths, cfg.AnchorKey)
	}
	if !cfg.Force {
		for _, path := range paths {
			if _, err := os.Stat(path); err == nil {
				return Generated{}, fmt.Errorf("%s already exists (use --force to overwrite)", path)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return Generated{}, err
			}
		}
	}
	files, err := newTrustFiles(cfg, &out)
	if err != nil {
		return Generated{}, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return Generated{}, fmt.Errorf("creating %s: %w", cfg.Dir, err)
	}
	for _, f := range files {
		if err := atomicfile.Write(f.path, f.data, f.mode); err != nil {
			return Generated{}, err
		}
	}
	return out, nil
}

type trustFile struct {
	path string
	data []byte
	mode os.FileMode
}

func newTrustFiles(cfg GenerateConfig, out *Generated) ([]trustFile, error) {
	now := time.Now()
	td := cfg.TrustDomain.Name()
	anchorKey, err := pki.GenerateKey()
	if err != nil {
		return nil, err
	}
	anchor, err := pki.NewTrustAnchor(td, anchorKey, cfg.AnchorTTL, now)
	if err != nil {
		return nil, err
	}
	issuerKey, err := pki.GenerateKey()
	if err != nil {
		return nil, err
	}
	issuer, err := pki.NewIssuer(td, issuerKey, anchor, anchorKey, cfg.IssuerTTL, now)
	if err != nil {
		return nil, err
	}
	joinKey, err := pki.GenerateKey()
	if err != nil {
		return nil, err
	}
	issuerKeyPEM, err := pki.EncodePrivateKey(issuerKey)
	if err != nil {
		return nil, err
	}
	joinKeyPEM, err := pki.EncodePrivateKey(joinKey)
	if err != nil {
		return nil, err
	}
	out.AnchorExpires, out.IssuerExpires = anchor.NotAfter, issuer.NotAfter
	files := []trustFile{
		{out.TrustAnchor, pki.EncodeCertificates(anchor), 0o644},
		{out.IssuerCert, pki.EncodeCertificates(issuer), 0o644},
		{out.IssuerKey, issuerKeyPEM, 0o600},
		{out.JoinTokenKey, joinKeyPEM, 0o600},
	}
	if cfg.AnchorKey != "" {
		anchorKeyPEM, err := pki.EncodePrivateKey(anchorKey)
		if err != nil {
			return nil, err
		}
		files = append(files, trustFile{cfg.AnchorKey, anchorKeyPEM, 0o600})
	}
	return files, nil
}

// RotateConfig says where the anchor is and where the new issuer goes.
type RotateConfig struct {
	AnchorCert, AnchorKey string // PEM files
	Dir                   string // the controller's issuer directory
	IssuerTTL             time.Duration
}

// RotateIssuer makes a new issuer under an existing trust anchor and writes
// it into dir (tls.crt, tls.key, and ca.crt), where a controller watching
// the directory picks it up without a restart. Certificates issued before
// stay valid: they chain to the same anchor.
func RotateIssuer(cfg RotateConfig) (Generated, error) {
	next, err := newIssuerUnder(cfg.AnchorCert, cfg.AnchorKey, cfg.IssuerTTL)
	if err != nil {
		return Generated{}, err
	}
	// ca.crt is what proxies trust: an anchor they were not given yet
	// would break every connection, so it must already be in the bundle
	// (during an anchor rotation, `skein identity rotate bundle` put it
	// there beside the old one, which stays).
	bundlePEM, err := os.ReadFile(filepath.Join(cfg.Dir, TrustAnchorFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		bundlePEM = pki.EncodeCertificates(next.anchor)
	case err != nil:
		return Generated{}, err
	default:
		if err := next.inBundle(bundlePEM, cfg.AnchorCert, filepath.Join(cfg.Dir, TrustAnchorFile)); err != nil {
			return Generated{}, err
		}
	}
	if err := DirStore(cfg.Dir).Save(context.Background(), IssuerPEM{Anchors: bundlePEM, Cert: next.certPEM, Key: next.keyPEM}); err != nil {
		return Generated{}, err
	}
	return Generated{
		TrustAnchor:   filepath.Join(cfg.Dir, TrustAnchorFile),
		IssuerCert:    filepath.Join(cfg.Dir, IssuerCertFile),
		IssuerKey:     filepath.Join(cfg.Dir, IssuerKeyFile),
		AnchorExpires: next.anchor.NotAfter,
		IssuerExpires: next.issuer.NotAfter,
	}, nil
}

// IssueUnderAnchor is RotateIssuer on any issuer store, whose ca.crt must
// already hold the anchor: the issue step of an anchor rotation. It
// returns the new issuer.
func IssueUnderAnchor(ctx context.Context, store IssuerStore, anchorCert, anchorKey string, ttl time.Duration) (*x509.Certificate, error) {
	m, err := store.Load(ctx)
	if err != nil {
		return nil, err
	}
	next, err := newIssuerUnder(anchorCert, anchorKey, ttl)
	if err != nil {
		return nil, err
	}
	if err := next.inBundle(m.Anchors, anchorCert, store.String()+" "+TrustAnchorFile); err != nil {
		return nil, err
	}
	m.Cert, m.Key = next.certPEM, next.keyPEM
	return next.issuer, store.Save(ctx, m)
}

// nextIssuer is an issuer made under an anchor, not written anywhere yet.
type nextIssuer struct {
	anchor, issuer  *x509.Certificate
	certPEM, keyPEM []byte
}

// newIssuerUnder makes an issuer signed by the anchor in the PEM files
// anchorCert and anchorKey, for ttl (DefaultIssuerTTL when 0; cut to the
// anchor's life).
func newIssuerUnder(anchorCert, anchorKey string, ttl time.Duration) (nextIssuer, error) {
	if ttl == 0 {
		ttl = DefaultIssuerTTL
	}
	certPEM, err := os.ReadFile(anchorCert)
	if err != nil {
		return nextIssuer{}, err
	}
	anchors, err := pki.ParseCertificates(certPEM)
	if err != nil {
		return nextIssuer{}, fmt.Errorf("%s: %w", anchorCert, err)
	}
	keyPEM, err := os.ReadFile(anchorKey)
	if err != nil {
		return nextIssuer{}, err
	}
	key, err := pki.ParsePrivateKey(keyPEM)
	if err != nil {
		return nextIssuer{}, fmt.Errorf("%s: %w", anchorKey, err)
	}
	anchor := anchors[0]
	if !key.PublicKey.Equal(anchor.PublicKey) {
		return nextIssuer{}, fmt.Errorf("%s is not the key of the anchor in %s", anchorKey, anchorCert)
	}
	if len(anchor.URIs) != 1 {
		return nextIssuer{}, fmt.Errorf("%s: the anchor names no trust domain", anchorCert)
	}
	issuerKey, err := pki.GenerateKey()
	if err != nil {
		return nextIssuer{}, err
	}
	issuer, err := pki.NewIssuer(anchor.URIs[0].Host, issuerKey, anchor, key, ttl, time.Now())
	if err != nil {
		return nextIssuer{}, err
	}
	issuerKeyPEM, err := pki.EncodePrivateKey(issuerKey)
	if err != nil {
		return nextIssuer{}, err
	}
	return nextIssuer{anchor: anchor, issuer: issuer, certPEM: pki.EncodeCertificates(issuer), keyPEM: issuerKeyPEM}, nil
}

// inBundle fails unless bundlePEM (named where) holds the issuer's anchor
// (read from anchorCert): proxies trust only what ca.crt holds.
func (n nextIssuer) inBundle(bundlePEM []byte, anchorCert, where string) error {
	bundle, err := pki.ParseCertificates(bundlePEM)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if !containsCert(bundle, n.anchor) {
		return fmt.Errorf("the anchor in %s is not in %s, so proxies do not trust it: add it first (skein identity rotate bundle)", anchorCert, where)
	}
	return nil
}
