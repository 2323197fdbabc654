package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/pki"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

// WatchTrustBundle sends the trust anchors and issuer in effect, then again
// each time the issuer source changes, until the caller goes away. The
// gRPC server's interceptor lets only mesh clients (a client certificate
// under the anchors) reach it. A proxy trusts what it is sent here over
// its verified connection to the controller, and nothing else: this is how
// an anchor rotation reaches running proxies. What the proxy reports back
// is kept while the stream lasts, for TrustHandler.
func (s *Service) WatchTrustBundle(stream identitypb.Identity_WatchTrustBundleServer) error {
	entry := s.reports.add()
	defer s.reports.remove(entry)
	// The receiver is owned by this call: its Recv returns once the stream
	// ends, which gRPC makes happen when this call returns (it cannot be
	// waited for here: it may be blocked in Recv until then).
	recvDone := make(chan error, 1)
	go func() { recvDone <- s.receiveReports(stream, entry) }()

	watcher, _ := s.cfg.Issuers.(IssuerWatcher)
	for {
		var changed <-chan struct{}
		if watcher != nil {
			changed = watcher.Changed()
		}
		issuer := s.cfg.Issuers.Issuer()
		if issuer == nil {
			return status.Error(codes.Unavailable, errNoIssuer.Error())
		}
		if err := stream.Send(&identitypb.TrustBundle{
			TrustAnchors:      rawCerts(issuer.TrustAnchors()),
			IssuerCertificate: issuer.Certificate().Raw,
		}); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case err := <-recvDone:
			return err
		case <-changed: // nil (never) for a source that cannot say
		}
	}
}

// receiveReports keeps the proxy's latest report until it stops sending.
func (s *Service) receiveReports(stream identitypb.Identity_WatchTrustBundleServer, entry *trustEntry) error {
	for {
		report, err := stream.Recv()
		if err != nil {
			return nil // the stream is over; the sender sees why
		}
		if err := s.reports.set(entry, report); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}
}

// maxReportedAnchors bounds one report: a proxy trusts one anchor, two
// during a rotation.
const maxReportedAnchors = 8

// maxTrustEntries bounds the proxies whose reports are kept (one per
// stream); past it streams are served but not counted.
const maxTrustEntries = 100_000

type trustEntry struct {
	reported          bool
	trusted           []string
	certificateAnchor string
}

// trustReports holds the latest report of each proxy with an open stream.
type trustReports struct {
	mu        sync.Mutex
	entries   map[*trustEntry]struct{}
	untracked int // streams past maxTrustEntries
}

func (r *trustReports) add() *trustEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.entries == nil {
		r.entries = map[*trustEntry]struct{}{}
	}
	if len(r.entries) >= maxTrustEntries {
		r.untracked++
		return nil
	}
	e := &trustEntry{}
	r.entries[e] = struct{}{}
	return e
}

func (r *trustReports) remove(e *trustEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e == nil {
		r.untracked--
		return
	}
	delete(r.entries, e)
}

func (r *trustReports) set(e *trustEntry, report *identitypb.TrustReport) error {
	anchors := report.GetTrustedAnchors()
	if len(anchors) > maxReportedAnchors {
		return fmt.Errorf("a report names at most %d anchors", maxReportedAnchors)
	}
	for _, fp := range append([]string{report.GetCertificateAnchor()}, anchors...) {
		if len(fp) > 64 {
			return errors.New("an anchor fingerprint is 64 hex digits")
		}
	}
	if e == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e.reported, e.trusted, e.certificateAnchor = true, anchors, report.GetCertificateAnchor()
	return nil
}

// TrustSummary is what the proxies connected to this controller trust and
// hold, against the anchors the controller has now: the JSON of the
// controller API's /api/v1/trust.
type TrustSummary struct {
	// Proxies with an open trust-bundle stream (that have reported or not).
	Proxies    int `json:"proxies"`
	Unreported int `json:"unreported"` // not yet reported, or past the count kept
	// Anchors are the controller's anchors now, in ca.crt's order.
	Anchors []AnchorSummary `json:"anchors"`
}

// AnchorSummary counts the proxies that trust one anchor and those whose
// certificate chains to it.
type AnchorSummary struct {
	Fingerprint  string `json:"fingerprint"`
	Issuer       bool   `json:"issuer"` // the issuer in effect chains to it
	Trusting     int    `json:"trusting"`
	Certificates int    `json:"certificates"`
}

// TrustSummary counts the reports kept against the anchors in effect.
func (s *Service) TrustSummary() TrustSummary {
	var out TrustSummary
	issuer := s.cfg.Issuers.Issuer()
	index := map[string]int{}
	if issuer != nil {
		for i, a := range issuer.TrustAnchors() {
			fp := pki.Fingerprint(a)
			index[fp] = i
			out.Anchors = append(out.Anchors, AnchorSummary{Fingerprint: fp,
				Issuer: a.Equal(issuer.Certificate()) || issuer.Certificate().CheckSignatureFrom(a) == nil})
		}
	}
	r := &s.reports
	r.mu.Lock()
	defer r.mu.Unlock()
	out.Proxies = len(r.entries) + r.untracked
	out.Unreported = r.untracked
	for e := range r.entries {
		if !e.reported {
			out.Unreported++
			continue
		}
		for _, fp := range e.trusted {
			if i, ok := index[fp]; ok {
				out.Anchors[i].Trusting++
			}
		}
		if i, ok := index[e.certificateAnchor]; ok {
			out.Anchors[i].Certificates++
		}
	}
	return out
}

// TrustHandler serves TrustSummary as JSON.
func (s *Service) TrustHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.TrustSummary())
	})
}
