package identity

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/pki"
)

// ServerTLS returns the TLS config for the controller's gRPC server. It
// issues the controller a certificate for id from the current issuer and
// replaces it at 70% of its life or as soon as the issuer changes. A
// client certificate is asked for but not required (a proxy calls Certify
// before it has one): one that is sent must be a mesh certificate, and
// MeshPeer tells the other APIs who the client is.
func (s *Service) ServerTLS(id spiffeid.ID) *tls.Config {
	sc := s.ownCert(id)
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		GetCertificate:        sc.get,
		NextProtos:            []string{"h2"},
		ClientAuth:            tls.RequestClientCert,
		VerifyPeerCertificate: s.verifyMeshClient,
	}
}

// ClientTLS returns the TLS config the controller calls a proxy with (tap):
// it presents the controller's certificate for self, the one ServerTLS
// serves, and accepts only a server certificate that chains to the trust
// anchors of the issuer in effect and names server.
func (s *Service) ClientTLS(self, server spiffeid.ID) *tls.Config {
	sc := s.ownCert(self)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return sc.get(nil)
		},
		// The chain and the SPIFFE ID are checked below: the server's
		// certificate names no DNS name.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			id, err := s.verifyChain(rawCerts)
			if err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			if id != server {
				return fmt.Errorf("server certificate names %s, want %s", id, server)
			}
			return nil
		},
	}
}

// ownCert is the controller's certificate for id, made at its first use.
func (s *Service) ownCert(id spiffeid.ID) *servingCert {
	s.ownCertsMu.Lock()
	defer s.ownCertsMu.Unlock()
	if sc := s.ownCerts[id]; sc != nil {
		return sc
	}
	if s.ownCerts == nil {
		s.ownCerts = map[spiffeid.ID]*servingCert{}
	}
	sc := &servingCert{service: s, id: id}
	s.ownCerts[id] = sc
	return sc
}

// servingCert is the controller's own certificate, reissued when stale.
type servingCert struct {
	service *Service
	id      spiffeid.ID

	mu      sync.Mutex
	key     *ecdsa.PrivateKey // made at the first handshake
	cert    *tls.Certificate
	issuer  *Issuer
	renewAt time.Time
}

func (sc *servingCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	now := sc.service.cfg.Now()
	issuer := sc.service.cfg.Issuers.Issuer()
	if issuer == nil {
		return nil, errNoIssuer
	}
	if sc.cert != nil && sc.issuer == issuer && now.Before(sc.renewAt) {
		return sc.cert, nil
	}
	if sc.key == nil {
		key, err := pki.GenerateKey()
		if err != nil {
			return nil, err
		}
		sc.key = key
	}
	leaf, err := issuer.sign(sc.id, &sc.key.PublicKey, sc.service.cfg.Lifetime, sc.service.cfg.ClockSkew, now)
	if err != nil {
		return nil, fmt.Errorf("issuing the controller's serving certificate: %w", err)
	}
	chain := append([][]byte{leaf.Raw}, rawCerts(issuer.Chain())...)
	sc.cert = &tls.Certificate{Certificate: chain, PrivateKey: sc.key, Leaf: leaf}
	sc.issuer = issuer
	sc.renewAt = now.Add(leaf.NotAfter.Sub(now) * 7 / 10)
	sc.service.cfg.Log.Info("controller serving certificate issued", "identity", sc.id.String(), "not_after", leaf.NotAfter)
	return sc.cert, nil
}
