package identity

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
)

// IssuerSource gives the issuer to sign with now. The Certify service needs
// nothing else, so files and Kubernetes Secrets look the same to it.
type IssuerSource interface {
	Issuer() *Issuer
}

// issuerHolder keeps the current issuer and replaces it only with a valid
// one; both sources embed it.
type issuerHolder struct {
	current atomic.Pointer[Issuer]
	now     func() time.Time
	log     *slog.Logger
	origin  string // for logs: the directory or namespace/name
}

func (h *issuerHolder) Issuer() *Issuer { return h.current.Load() }

// replace validates new material and swaps it in; on failure the old issuer
// stays and the reason is logged and returned.
func (h *issuerHolder) replace(certPEM, keyPEM, anchorsPEM []byte) error {
	issuer, err := ParseIssuer(certPEM, keyPEM, anchorsPEM, h.now())
	if err != nil {
		h.log.Error("new issuer rejected, keeping the current one", "source", h.origin, "err", err)
		return err
	}
	old := h.current.Swap(issuer)
	if old != nil && old.cert.Equal(issuer.cert) {
		return nil
	}
	h.log.Info("issuer loaded", "source", h.origin,
		"subject", issuer.cert.Subject.String(),
		"serial", issuer.cert.SerialNumber.Text(16),
		"not_after", issuer.cert.NotAfter)
	return nil
}

var errNoIssuer = errors.New("no valid issuer loaded")
