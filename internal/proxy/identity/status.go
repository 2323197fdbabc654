package identity

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"
)

// Status describes the current certificate, as the admin server's
// /identity endpoint returns it in JSON and `skein identity show` prints it.
type Status struct {
	Identity string `json:"identity"` // SPIFFE ID in the certificate
	Issuer   string `json:"issuer"`   // issuer's subject
	// IssuerKeyID tells issuers with the same subject apart (a rotated
	// issuer): the certificate's authority key ID, hexadecimal.
	IssuerKeyID string    `json:"issuer_key_id"`
	NotBefore   time.Time `json:"not_before"` // RFC 3339
	NotAfter    time.Time `json:"not_after"`  // RFC 3339
	Serial      string    `json:"serial"`     // hexadecimal
	// TrustAnchors are the anchors the proxy trusts now, by the SHA-256 of
	// their DER in hex: during an anchor rotation the old and the new one.
	TrustAnchors []string `json:"trust_anchors"`
}

// Status describes the current certificate; false before one is held.
func (l *Local) Status() (Status, bool) {
	leaf, ok := l.Certificate()
	if !ok {
		return Status{}, false
	}
	return Status{
		Identity:     l.id.String(),
		Issuer:       leaf.Issuer.String(),
		IssuerKeyID:  hex.EncodeToString(leaf.AuthorityKeyId),
		NotBefore:    leaf.NotBefore.UTC(),
		NotAfter:     leaf.NotAfter.UTC(),
		Serial:       leaf.SerialNumber.Text(16),
		TrustAnchors: l.anchors.Fingerprints(),
	}, true
}

// StatusHandler serves GET /identity: the Status of the current
// certificate as JSON, or 503 before one is held.
func (l *Local) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		status, ok := l.Status()
		if !ok {
			http.Error(w, l.Ready().Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(status)
	})
}
