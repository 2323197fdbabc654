package identity

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"

	identitypb "github.com/skeinmesh/skein/proto/identity"
)

// IssuerRollSpread is how long after it sees a new issuer on
// WatchTrustBundle a proxy renews its certificate at the latest: each
// proxy waits a random part of it, so that a mesh does not ask the
// controller all at once.
const IssuerRollSpread = 10 * time.Second

// WatchTrustBundle follows the controller's trust bundle until ctx is
// done: client must reach the controller over the connection that
// presents this workload's certificate (the method needs it). Each bundle
// replaces the anchors (logged when they change); a new issuer makes the
// proxy renew within IssuerRollSpread, and a certificate that no longer
// chains to the anchors is renewed at once. A broken stream is re-opened
// with the same back-off as Certify.
func (l *Local) WatchTrustBundle(ctx context.Context, client identitypb.IdentityClient) {
	failures := 0
	for {
		err := l.watchOnce(ctx, client, func() { failures = 0 })
		if ctx.Err() != nil {
			return
		}
		failures++
		wait := l.sched.retryAfter(failures, l.cfg.Now(), time.Time{})
		l.cfg.Log.Warn("trust bundle stream ended, reopening", "err", err, "in", wait)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

func (l *Local) watchOnce(ctx context.Context, client identitypb.IdentityClient, received func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.WatchTrustBundle(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // stops the reporter before wg.Wait
	wg.Go(func() { l.sendReports(ctx, stream) })
	for {
		msg, err := stream.Recv()
		if err != nil {
			return err
		}
		received()
		if err := l.applyBundle(msg); err != nil {
			// Keep what is held: a bundle that cannot be used is not trusted.
			l.cfg.Log.Error("trust bundle from the controller refused, keeping the current anchors", "err", err)
		}
		l.askReport()
	}
}

// sendReports tells the controller what this proxy trusts and holds each
// time that may have changed, until ctx is done. It is the stream's only
// sender.
func (l *Local) sendReports(ctx context.Context, stream identitypb.Identity_WatchTrustBundleClient) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.reportSoon:
		}
		report := &identitypb.TrustReport{TrustedAnchors: l.anchors.Fingerprints()}
		if svid := l.current.Load(); svid != nil {
			report.CertificateAnchor = l.anchors.chainAnchor(svid.Certificates, l.cfg.Now())
		}
		if err := stream.Send(report); err != nil {
			return // Recv sees the stream end
		}
	}
}

// askReport asks sendReports to send a report; one pending is enough.
func (l *Local) askReport() {
	select {
	case l.reportSoon <- struct{}{}:
	default:
	}
}

// applyBundle takes the controller's anchors and asks for a renewal when
// the certificate held is not the current issuer's.
func (l *Local) applyBundle(msg *identitypb.TrustBundle) error {
	anchors, err := parseAnchors(msg.GetTrustAnchors())
	if err != nil {
		return err
	}
	issuer, err := x509.ParseCertificate(msg.GetIssuerCertificate())
	if err != nil {
		return fmt.Errorf("parsing the issuer certificate: %w", err)
	}
	if _, err := l.anchors.set(anchors, "trust bundle stream"); err != nil {
		return err
	}
	svid := l.current.Load()
	if svid == nil {
		return nil // Run is getting the first certificate anyway
	}
	if _, _, err := x509svid.Verify(svid.Certificates, l.anchors, x509svid.WithTime(l.cfg.Now())); err != nil {
		l.cfg.Log.Warn("certificate held does not chain to the trust anchors any more; renewing now", "err", err)
		l.askRenewal(0)
		return nil
	}
	if svid.Certificates[0].CheckSignatureFrom(issuer) != nil {
		in := rand.N(IssuerRollSpread)
		l.cfg.Log.Info("new issuer; renewing the certificate", "issuer", issuer.Subject.String(), "in", in)
		l.askRenewal(in)
	}
	return nil
}

// askRenewal asks Run to renew within d; a pending earlier request stands.
func (l *Local) askRenewal(d time.Duration) {
	select {
	case l.renewSoon <- d:
	default:
		select { // replace a later pending request with this one
		case old := <-l.renewSoon:
			l.renewSoon <- min(old, d)
		default:
			l.renewSoon <- d
		}
	}
}
