package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
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
	cfg := tlsconfig.MTLSServerConfig(svidSource{l}, l.bundle, tlsconfig.AuthorizeMemberOf(l.id.TrustDomain()))
	return tls13(cfg, nextProtos)
}

// ClientTLS is the config for outbound mesh connections to a server that
// must be exactly serverID.
func (l *Local) ClientTLS(serverID spiffeid.ID, nextProtos []string) *tls.Config {
	cfg := tlsconfig.MTLSClientConfig(svidSource{l}, l.bundle, tlsconfig.AuthorizeID(serverID))
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

func tls13(cfg *tls.Config, nextProtos []string) *tls.Config {
	cfg.MinVersion = tls.VersionTLS13
	cfg.NextProtos = nextProtos
	return cfg
}
