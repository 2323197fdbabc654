package identity

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identitypb "github.com/skeinmesh/skein/proto/identity"
)

// WatchTrustBundle sends the trust anchors and issuer in effect, then again
// each time the issuer source changes, until the caller goes away. The
// gRPC server's interceptor lets only mesh clients (a client certificate
// under the anchors) reach it. A proxy trusts what it is sent here over
// its verified connection to the controller, and nothing else: this is how
// an anchor rotation reaches running proxies.
func (s *Service) WatchTrustBundle(_ *identitypb.WatchTrustBundleRequest, stream identitypb.Identity_WatchTrustBundleServer) error {
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
		case <-changed: // nil (never) for a source that cannot say
		}
	}
}
