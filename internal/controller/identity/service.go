package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/skeinmesh/skein/internal/controller/clientip"
	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/pki"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

// DefaultLifetime is how long a workload certificate is valid unless
// configured otherwise.
const DefaultLifetime = 24 * time.Hour

// DefaultClockSkew is how far before "now" an issued certificate's
// NotBefore is set unless configured otherwise; MaxClockSkew is the most
// that may be configured.
const (
	DefaultClockSkew = pki.ClockSkew
	MaxClockSkew     = 10 * time.Minute
)

// Config is what the identity service needs.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Issuers     IssuerSource
	Tokens      TokenValidator
	// Lifetime of issued certificates; default DefaultLifetime. Never past
	// the issuer's own expiry.
	Lifetime time.Duration
	// ClockSkew backdates every issued certificate's NotBefore, so that
	// peers whose clocks lag this one's take it at once; default
	// DefaultClockSkew, at most MaxClockSkew.
	ClockSkew time.Duration
	// CertifyRate and CertifyBurst bound Certify calls per client IP (a
	// token bucket); past them a call is refused with RESOURCE_EXHAUSTED.
	// Zero means DefaultCertifyRate and DefaultCertifyBurst.
	CertifyRate  float64
	CertifyBurst int
	// Registerer receives the issued/refused counters; nil registers none.
	Registerer prometheus.Registerer
	Log        *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Validate checks the config and fills in defaults.
func (c *Config) Validate() error {
	switch {
	case c.TrustDomain.IsZero():
		return errors.New("identity config: TrustDomain is required")
	case c.Issuers == nil:
		return errors.New("identity config: Issuers is required")
	case c.Tokens == nil:
		return errors.New("identity config: Tokens is required")
	case c.Lifetime < 0:
		return fmt.Errorf("identity config: Lifetime %s is negative", c.Lifetime)
	case c.ClockSkew < 0 || c.ClockSkew > MaxClockSkew:
		return fmt.Errorf("identity config: ClockSkew %s is not between 0 and %s", c.ClockSkew, MaxClockSkew)
	case c.CertifyRate < 0 || c.CertifyBurst < 0:
		return fmt.Errorf("identity config: CertifyRate %g and CertifyBurst %d must not be negative", c.CertifyRate, c.CertifyBurst)
	}
	if c.CertifyRate == 0 {
		c.CertifyRate = DefaultCertifyRate
	}
	if c.CertifyBurst == 0 {
		c.CertifyBurst = DefaultCertifyBurst
	}
	if c.Lifetime == 0 {
		c.Lifetime = DefaultLifetime
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Service is the Identity gRPC service: it certifies workload keys.
type Service struct {
	identitypb.UnimplementedIdentityServer
	cfg     Config
	metrics *metrics
	limiter *peerLimiter
	reports trustReports // what proxies on WatchTrustBundle trust and hold

	// ownCerts are the controller's own certificates, by identity: one key
	// and certificate serve the gRPC port (ServerTLS) and the controller's
	// calls to the proxies (ClientTLS).
	ownCertsMu sync.Mutex
	ownCerts   map[spiffeid.ID]*servingCert
}

// NewService validates cfg and returns the service, ready to register on a
// gRPC server.
func NewService(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, metrics: m, limiter: newPeerLimiter(cfg.CertifyRate, cfg.CertifyBurst)}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(trustCollector{s}); err != nil {
			return nil, fmt.Errorf("registering the trust metrics: %w", err)
		}
	}
	return s, nil
}

// Register adds the service to a gRPC server.
func (s *Service) Register(srv grpc.ServiceRegistrar) {
	identitypb.RegisterIdentityServer(srv, s)
}

// Certify checks the request and, if the token proves the identity asked
// for, signs the CSR's key for it.
func (s *Service) Certify(ctx context.Context, req *identitypb.CertifyRequest) (*identitypb.CertifyResponse, error) {
	start := time.Now()
	defer func() { s.metrics.duration.Observe(time.Since(start).Seconds()) }()
	if !s.limiter.allow(ctx) {
		s.metrics.refused.WithLabelValues(codes.ResourceExhausted.String()).Inc()
		s.cfg.Log.Debug("certificate request refused: rate limit", "peer", clientip.FromContext(ctx))
		return nil, status.Errorf(codes.ResourceExhausted,
			"too many certificate requests from this client: at most %g per second (burst %d)", s.cfg.CertifyRate, s.cfg.CertifyBurst)
	}
	resp, err := s.certify(ctx, req)
	if err != nil {
		code := status.Code(err)
		s.metrics.refused.WithLabelValues(code.String()).Inc()
		s.cfg.Log.Warn("certificate refused", "identity", req.GetIdentity(), "code", code.String(), "reason", status.Convert(err).Message())
		return nil, err
	}
	s.metrics.issued.Inc()
	return resp, nil
}

func (s *Service) certify(ctx context.Context, req *identitypb.CertifyRequest) (*identitypb.CertifyResponse, error) {
	if err := refuseControlPlaneID(req.GetIdentity()); err != nil {
		return nil, err
	}
	id, err := ParseWorkloadID(s.cfg.TrustDomain, req.GetIdentity())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	pub, err := parseCSR(req.GetCertificateSigningRequest())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.checkToken(ctx, id, req.GetToken()); err != nil {
		return nil, err
	}
	issuer := s.cfg.Issuers.Issuer()
	if issuer == nil {
		return nil, status.Error(codes.Unavailable, errNoIssuer.Error())
	}
	leaf, err := issuer.sign(id, pub, s.cfg.Lifetime, s.cfg.ClockSkew, s.cfg.Now())
	if err != nil {
		s.cfg.Log.Error("signing certificate", "identity", id.String(), "err", err)
		return nil, status.Error(codes.Internal, err.Error())
	}
	s.cfg.Log.Info("certificate issued", "identity", id.String(),
		"serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
	return &identitypb.CertifyResponse{
		LeafCertificate:          leaf.Raw,
		IntermediateCertificates: rawCerts(issuer.Chain()),
		ValidUntil:               timestamppb.New(leaf.NotAfter),
		TrustAnchors:             rawCerts(issuer.TrustAnchors()),
	}, nil
}

// MaxTokenSize bounds the token of a Certify request. Service-account
// and join tokens are around a kilobyte.
const MaxTokenSize = 16 << 10

// refuseControlPlaneID refuses an identity reserved for the control plane
// (meshid) whatever token comes with it. ParseWorkloadID would refuse its
// form too; this says why, and holds should that form ever widen.
func refuseControlPlaneID(s string) error {
	if id, err := spiffeid.FromString(s); err == nil && meshid.IsControlPlane(id) {
		return status.Errorf(codes.PermissionDenied, "identity %s is reserved for the mesh's control plane", id)
	}
	return nil
}

// checkToken maps token problems to gRPC codes: a bad token is
// Unauthenticated, a good token for someone else is PermissionDenied.
func (s *Service) checkToken(ctx context.Context, want spiffeid.ID, token []byte) error {
	if len(token) == 0 {
		return status.Error(codes.Unauthenticated, "no token in request")
	}
	if len(token) > MaxTokenSize {
		return status.Errorf(codes.Unauthenticated, "token is %d bytes, more than any token this service accepts (%d)", len(token), MaxTokenSize)
	}
	got, err := s.cfg.Tokens.Validate(ctx, token)
	switch {
	case errors.Is(err, ErrTokenCheckUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case err != nil:
		return status.Error(codes.Unauthenticated, err.Error())
	case got != want:
		return status.Errorf(codes.PermissionDenied, "token is for %s, not %s", got, want)
	}
	return nil
}

// parseCSR checks the request's signature and returns its key, which must
// be ECDSA P-256. Everything else the CSR asks for is ignored.
func parseCSR(der []byte) (*ecdsa.PublicKey, error) {
	if len(der) == 0 {
		return nil, errors.New("no certificate signing request")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("parsing certificate signing request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate signing request signature: %w", err)
	}
	if !pki.IsP256(csr.PublicKey) {
		return nil, fmt.Errorf("certificate signing request key is %s, want ECDSA P-256", csr.PublicKeyAlgorithm)
	}
	return csr.PublicKey.(*ecdsa.PublicKey), nil
}

func rawCerts(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, cert := range certs {
		out[i] = cert.Raw
	}
	return out
}
