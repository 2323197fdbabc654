package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// verifyMeshClient is the server's check of a client certificate, when the
// client sent one: it must chain to the trust anchors of the issuer in
// effect and name a SPIFFE ID in the trust domain. A client that sends a
// bad certificate fails the handshake; one that sends none gets through
// the handshake and is refused by MeshPeer on every API but Certify.
func (s *Service) verifyMeshClient(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return nil
	}
	id, err := s.verifyChain(rawCerts)
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	if id.TrustDomain() != s.cfg.TrustDomain {
		return fmt.Errorf("client certificate: %s is not in trust domain %s", id, s.cfg.TrustDomain)
	}
	return nil
}

// ErrNoMeshPeer says a call came without a verified mesh client
// certificate.
var ErrNoMeshPeer = errors.New("a mesh client certificate is required")

// MeshPeer is the SPIFFE ID of the client of a gRPC call on a server using
// ServerTLS, or ErrNoMeshPeer when the client sent no certificate. The
// handshake already verified any certificate the client sent.
func MeshPeer(ctx context.Context) (spiffeid.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, ErrNoMeshPeer
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, ErrNoMeshPeer
	}
	id, err := x509svid.IDFromCert(info.State.PeerCertificates[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: %v", ErrNoMeshPeer, err)
	}
	return id, nil
}

// verifyChain checks a peer's certificate chain against the trust anchors
// of the issuer in effect and returns the SPIFFE ID it names.
func (s *Service) verifyChain(rawCerts [][]byte) (spiffeid.ID, error) {
	issuer := s.cfg.Issuers.Issuer()
	if issuer == nil {
		return spiffeid.ID{}, errNoIssuer
	}
	bundle := x509bundle.FromX509Authorities(s.cfg.TrustDomain, issuer.TrustAnchors())
	id, _, err := x509svid.ParseAndVerify(rawCerts, bundle)
	return id, err
}
