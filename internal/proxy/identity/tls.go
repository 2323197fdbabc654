package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/skeinmesh/skein/internal/pki"
)

// errNoCertificate is what a handshake fails with before the first
// certificate arrives.
var errNoCertificate = errors.New("no certificate yet")

// svidSource hands go-spiffe the current certificate and key. It is
// unexported so that Local's key has no exported path out.
type svidSource struct{ l *Local }

func (s svidSource) GetX509SVID() (*x509svid.SVID, error) {
	svid := s.l.current.Load()
	if svid == nil {
		return nil, errNoCertificate
	}
	return svid, nil
}

// ServerTLS is the config for inbound mesh connections: it presents the
// current certificate (looked up per handshake, so renewals need no new
// config) and requires a client certificate from any identity in the
// trust domain, verified against the trust anchors. Authorization of
// particular clients is policy's job, using PeerID.
func (l *Local) ServerTLS(nextProtos []string) *tls.Config {
	cfg := tlsconfig.MTLSServerConfig(svidSource{l}, l.anchors, tlsconfig.AuthorizeMemberOf(l.id.TrustDomain()))
	return tls13(cfg, nextProtos)
}

// ServerTLSFor is the config of a server only clientID may use (the
// proxy's tap, served to the controller): the current certificate, and a
// client certificate required that chains to the trust anchors and names
// exactly clientID; anyone else fails the handshake.
func (l *Local) ServerTLSFor(clientID spiffeid.ID, nextProtos []string) *tls.Config {
	cfg := tlsconfig.MTLSServerConfig(svidSource{l}, l.anchors, tlsconfig.AuthorizeID(clientID))
	return tls13(cfg, nextProtos)
}

// ClientTLS is the config for outbound mesh connections to a server that
// must be exactly serverID.
func (l *Local) ClientTLS(serverID spiffeid.ID, nextProtos []string) *tls.Config {
	cfg := tlsconfig.MTLSClientConfig(svidSource{l}, l.anchors, tlsconfig.AuthorizeID(serverID))
	return tls13(cfg, nextProtos)
}

// ControllerTLS is the config for dialing the controller, before this
// workload has a certificate: no client certificate, and the server must
// be controllerID under trustAnchors.
func ControllerTLS(trustAnchors []*x509.Certificate, controllerID spiffeid.ID) *tls.Config {
	bundle := x509bundle.FromX509Authorities(controllerID.TrustDomain(), trustAnchors)
	cfg := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(controllerID))
	return tls13(cfg, []string{"h2"})
}

// ControllerTLSFrom is ControllerTLS with anchors looked up per handshake,
// so that a proxy whose anchors the controller changed still verifies the
// controller's new certificate (re-issued under a new issuer).
func ControllerTLSFrom(anchors *Anchors, controllerID spiffeid.ID) *tls.Config {
	cfg := tlsconfig.TLSClientConfig(anchors, tlsconfig.AuthorizeID(controllerID))
	return tls13(cfg, []string{"h2"})
}

// PeerID is the SPIFFE ID of the peer of a connection made with ServerTLS,
// ClientTLS or ControllerTLS, whose certificate those configs verified.
func PeerID(cs tls.ConnectionState) (spiffeid.ID, error) {
	if !cs.HandshakeComplete {
		return spiffeid.ID{}, errors.New("peer identity: handshake not complete")
	}
	if len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, errors.New("peer identity: peer sent no certificate")
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("peer identity: %w", err)
	}
	return id, nil
}

// tls13 finishes a mesh config from go-spiffe: TLS 1.3 only, and peers
// with the mesh's kind of key only.
func tls13(cfg *tls.Config, nextProtos []string) *tls.Config {
	cfg.MinVersion = tls.VersionTLS13
	cfg.NextProtos = nextProtos
	verify := cfg.VerifyPeerCertificate
	cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		if err := requireMeshKey(raw); err != nil {
			return err
		}
		return verify(raw, chains)
	}
	return cfg
}

// requireMeshKey refuses a peer whose certificate's key is not ECDSA P-256,
// the only kind the identity service certifies, before its handshake
// signature is checked. In FIPS 140-3 mode crypto/tls itself refuses keys
// that FIPS does not approve (RSA under 2048 bits), but only in chains it
// verifies; the mesh's chains are verified by go-spiffe instead.
func requireMeshKey(raw [][]byte) error {
	if len(raw) == 0 {
		return nil // go-spiffe's verification says the certificate is missing
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("parsing peer certificate: %w", err)
	}
	if !pki.IsP256(cert.PublicKey) {
		return fmt.Errorf("peer certificate has %s; the mesh uses only ECDSA P-256", describeKey(cert.PublicKey))
	}
	return nil
}

// describeKey names a public key's kind and size, for errors.
func describeKey(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("an RSA %d-bit key", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "an ECDSA " + k.Curve.Params().Name + " key"
	case ed25519.PublicKey:
		return "an Ed25519 key"
	default:
		return fmt.Sprintf("a %T key", pub)
	}
}
