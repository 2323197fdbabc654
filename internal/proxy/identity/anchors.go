package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/atomicfile"
	"github.com/skeinmesh/skein/internal/pki"
)

// Anchors is the set of trust anchors a proxy trusts now. It starts with
// the anchors the proxy was started with and is replaced only by anchors
// the controller sends (with a Certify answer, or on WatchTrustBundle)
// over a connection verified against the anchors held before: during a
// rotation the old and the new anchor, at the end the new one alone.
// Every TLS config of the proxy looks it up per handshake, so a change
// holds for the next handshake without a restart.
type Anchors struct {
	td      spiffeid.TrustDomain
	log     *slog.Logger
	mu      sync.Mutex // serialises set, so logs match the order of changes
	current atomic.Pointer[x509bundle.Bundle]
	cache   string // see KeepIn
}

// KeepIn makes every change of the anchors written to path (PEM, renamed
// into place), where LoadKept finds them when the proxy starts again: a
// container restarted after an anchor rotation's last step starts from the
// anchors it had learned, not the ones it was injected with, which may no
// longer verify the controller. path should be on a volume that lives as
// long as the pod and that only the proxy mounts (the injector's
// skein-proxy-state, in memory).
func (a *Anchors) KeepIn(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cache = path
}

// LoadKept reads the anchors KeepIn wrote; ok is false when there are none
// (the pod's first start) or they cannot be used, which is logged.
func LoadKept(path string, log *slog.Logger) (certs []*x509.Certificate, ok bool) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false
	}
	if err == nil {
		certs, err = pki.ParseCertificates(data)
	}
	if err == nil {
		err = checkAnchors(certs)
	}
	if err != nil {
		log.Warn("not using the trust anchors kept from before a restart", "path", path, "err", err)
		return nil, false
	}
	return certs, true
}

// NewAnchors holds certs as the anchors of td. A nil log means slog.Default.
func NewAnchors(td spiffeid.TrustDomain, certs []*x509.Certificate, log *slog.Logger) (*Anchors, error) {
	if err := checkAnchors(certs); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	a := &Anchors{td: td, log: log}
	a.current.Store(x509bundle.FromX509Authorities(td, certs))
	return a, nil
}

// GetX509BundleForTrustDomain is the x509bundle.Source go-spiffe's TLS
// configs ask at each handshake. Only the mesh's own trust domain has one.
func (a *Anchors) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != a.td {
		return nil, fmt.Errorf("no trust anchors for trust domain %q", td)
	}
	return a.current.Load(), nil
}

// Certificates are the anchors held now.
func (a *Anchors) Certificates() []*x509.Certificate {
	return a.current.Load().X509Authorities()
}

// Fingerprints names the anchors held now (pki.Fingerprint each).
func (a *Anchors) Fingerprints() []string {
	certs := a.Certificates()
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = pki.Fingerprint(c)
	}
	return out
}

// set replaces the anchors; it reports whether they changed. The caller
// must have received certs from the controller over a verified connection.
func (a *Anchors) set(certs []*x509.Certificate, from string) (bool, error) {
	if err := checkAnchors(certs); err != nil {
		return false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.current.Load()
	next := x509bundle.FromX509Authorities(a.td, certs)
	if old.Equal(next) {
		return false, nil
	}
	before := a.Fingerprints()
	a.current.Store(next)
	after := a.Fingerprints()
	a.log.Info("trust anchors changed", "from", from,
		"added", missingFrom(after, before), "removed", missingFrom(before, after), "now", after)
	if a.cache != "" {
		if err := atomicfile.Write(a.cache, pki.EncodeCertificates(certs...), 0o600); err != nil {
			// Held in memory all the same; only a restart would miss them.
			a.log.Warn("cannot keep the trust anchors for a restart", "path", a.cache, "err", err)
		}
	}
	return true, nil
}

// checkAnchors refuses an empty set or one with a certificate that is not
// a CA: a proxy never ends up trusting nothing, or a leaf.
func checkAnchors(certs []*x509.Certificate) error {
	if len(certs) == 0 {
		return errors.New("trust anchors: none given")
	}
	for _, c := range certs {
		if !c.IsCA {
			return fmt.Errorf("trust anchors: %q is not a CA certificate", c.Subject)
		}
	}
	return nil
}

// parseAnchors reads DER anchors as the controller sends them.
func parseAnchors(raw [][]byte) ([]*x509.Certificate, error) {
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parsing trust anchor %d: %w", i, err)
		}
		certs[i] = c
	}
	return certs, checkAnchors(certs)
}

func missingFrom(list, other []string) []string {
	var out []string
	for _, s := range list {
		if !slices.Contains(other, s) {
			out = append(out, s)
		}
	}
	return out
}

// chainAnchor is the fingerprint of the anchor held that chain (leaf
// first) verifies to at now, or "" when none does.
func (a *Anchors) chainAnchor(chain []*x509.Certificate, now time.Time) string {
	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}
	for _, anchor := range a.Certificates() {
		roots := x509.NewCertPool()
		roots.AddCert(anchor)
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates,
			CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			return pki.Fingerprint(anchor)
		}
	}
	return ""
}
