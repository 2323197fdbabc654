package identity

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// IssuerSource gives the issuer to sign with now. The Certify service needs
// nothing else, so files and Kubernetes Secrets look the same to it.
type IssuerSource interface {
	Issuer() *Issuer
}

// IssuerWatcher is an IssuerSource that says when its issuer or anchors
// change (both sources do): WatchTrustBundle pushes each change at once.
type IssuerWatcher interface {
	IssuerSource
	Changed() <-chan struct{}
}

// issuerHolder keeps the current issuer and replaces it only with a valid
// one; both sources embed it.
type issuerHolder struct {
	current atomic.Pointer[Issuer]
	now     func() time.Time
	log     *slog.Logger
	origin  string // for logs: the directory or namespace/name

	changedMu sync.Mutex
	changed   chan struct{} // closed, and replaced, when the issuer or anchors change
}

func (h *issuerHolder) Issuer() *Issuer { return h.current.Load() }

// Changed is closed when the issuer or its trust anchors next change; take
// it before reading Issuer so that no change falls between the two.
func (h *issuerHolder) Changed() <-chan struct{} {
	h.changedMu.Lock()
	defer h.changedMu.Unlock()
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	return h.changed
}

func (h *issuerHolder) notify() {
	h.changedMu.Lock()
	defer h.changedMu.Unlock()
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
}

// replace validates new material and swaps it in; on failure the old issuer
// stays and the reason is logged and returned.
func (h *issuerHolder) replace(certPEM, keyPEM, anchorsPEM []byte) error {
	issuer, err := ParseIssuer(certPEM, keyPEM, anchorsPEM, h.now())
	if err != nil {
		h.log.Error("new issuer rejected, keeping the current one", "source", h.origin, "err", err)
		return err
	}
	old := h.current.Swap(issuer)
	if old != nil && old.cert.Equal(issuer.cert) && sameCerts(old.anchors, issuer.anchors) {
		return nil
	}
	h.notify()
	h.log.Info("issuer loaded", "source", h.origin,
		"subject", issuer.cert.Subject.String(),
		"serial", issuer.cert.SerialNumber.Text(16),
		"not_after", issuer.cert.NotAfter,
		"trust_anchors", AnchorFingerprints(issuer.anchors))
	return nil
}

var errNoIssuer = errors.New("no valid issuer loaded")
