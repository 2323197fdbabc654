// Package controller assembles skein-controller: it reads a Config, builds
// the model from one source (a directory of manifests, or Kubernetes),
// serves the destination, identity and policy gRPC services on one TLS port
// and an admin server for metrics and health. The services themselves live
// in the subpackages; this one only wires them together.
package controller

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/controller/destination"
	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/inbound"
)

// Config is everything the controller needs.
type Config struct {
	// ManifestsDir is a directory of YAML manifests (Service, Workload):
	// the local mesh and workloads outside Kubernetes. Exactly one of
	// ManifestsDir and Kubernetes is set.
	ManifestsDir string
	// Kubernetes reads the model from the API server (in-cluster, or
	// Kubeconfig when set).
	Kubernetes bool
	Kubeconfig string
	// KubeAPIQPS and KubeAPIBurst bound the controller's requests to the
	// API server (informers, TokenReviews), client-go's token bucket.
	KubeAPIQPS   float64
	KubeAPIBurst int
	// ServiceAccountIssuer is the API server's service-account token
	// issuer ("iss"); a token from another issuer is refused without a
	// TokenReview. Empty: read it from the controller's own in-cluster
	// token, or skip that check when there is none.
	ServiceAccountIssuer string

	// IdentityDir holds the issuer: tls.crt, tls.key and ca.crt. Or
	// IdentitySecret names a Kubernetes Secret "namespace/name" with the
	// same keys.
	IdentityDir    string
	IdentitySecret string
	// JoinTokenKey verifies join tokens of workloads outside Kubernetes: a
	// PUBLIC KEY PEM (join-token.pub), or the signing key `skein identity
	// generate` wrote, of which only the public half is kept. Optional with
	// Kubernetes, where service-account tokens are checked with TokenReview.
	JoinTokenKey string
	// JoinTokenMaxLifetime is the longest life (exp - iat) of a join token
	// the controller accepts, however well signed.
	JoinTokenMaxLifetime time.Duration
	TrustDomain          string
	CertLifetime         time.Duration
	// ClockSkew is how far before "now" an issued certificate's NotBefore
	// is set, so that peers whose clocks lag the controller's take it.
	ClockSkew time.Duration
	// CertifyRate (per second) and CertifyBurst bound Certify calls per
	// client IP; past them a call is refused with RESOURCE_EXHAUSTED.
	CertifyRate  float64
	CertifyBurst int

	GRPCAddr  string
	AdminAddr string
	// MaxStreamsPerConnection caps concurrent gRPC streams on one client
	// connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
	MaxStreamsPerConnection uint32
	// MaxDestinationStreamsPerPeer caps the destination streams one client
	// IP address holds open, over all its connections; past it a stream
	// is refused with RESOURCE_EXHAUSTED. Policy streams have the same cap,
	// counted apart.
	MaxDestinationStreamsPerPeer int
	// PrometheusURL is where the metrics API sends its PromQL; without it
	// the API serves tap, authz and trust, and its golden-metrics routes
	// answer 503.
	PrometheusURL string
	// APISocket is a unix socket for the metrics API (the local mesh's
	// CLI; mode 0660, so only root and its group); APIAddr a TCP address
	// for it, which must be a loopback address: the API has no
	// authentication of its own. Either, both or neither.
	APISocket string
	APIAddr   string
	// WebhookAddr serves the proxy injector (an admission webhook, HTTPS,
	// path /inject) with tls.crt and tls.key from WebhookCertDir, re-read at
	// every handshake so a renewed certificate needs no restart. Needs
	// Kubernetes. ProxyImage is the image injected proxies run.
	WebhookAddr    string
	WebhookCertDir string
	ProxyImage     string
	// ProxyControllerAddr is the address injected proxies dial to reach
	// this controller: its Service in the namespace it was installed in.
	// Required with WebhookAddr.
	ProxyControllerAddr string
	// DefaultInboundPolicy is the authorization policy of ports no Server
	// selects, unless the pod or its namespace says otherwise
	// (skein.io/default-inbound-policy); all-unauthenticated by default.
	DefaultInboundPolicy string
	// ClusterNetworks are the networks of the cluster-* default policies;
	// inbound.DefaultClusterNetworks by default.
	ClusterNetworks []netip.Prefix
	Log             *slog.Logger
}

// DefaultMaxStreamsPerConnection is above the destination streams one
// peer may hold, so a proxy on one connection meets the per-peer limit
// (an explicit RESOURCE_EXHAUSTED), not a silent wait for a free stream.
const DefaultMaxStreamsPerConnection = 1024

// Defaults of the controller's Kubernetes client: client-go's own (5 QPS,
// burst 10) let a few hundred pods starting at once wait seconds for
// their TokenReviews.
const (
	DefaultKubeAPIQPS   = 50
	DefaultKubeAPIBurst = 100
)

// Default returns a Config with the usual addresses.
func Default() Config {
	return Config{
		TrustDomain:  "cluster.local",
		CertLifetime: 24 * time.Hour,
		ClockSkew:    identity.DefaultClockSkew,
		GRPCAddr:     "0.0.0.0:8086",
		AdminAddr:    "0.0.0.0:9996",

		KubeAPIQPS:   DefaultKubeAPIQPS,
		KubeAPIBurst: DefaultKubeAPIBurst,
		CertifyRate:  identity.DefaultCertifyRate,
		CertifyBurst: identity.DefaultCertifyBurst,

		JoinTokenMaxLifetime: identity.DefaultJoinTokenMaxLifetime,

		MaxStreamsPerConnection:      DefaultMaxStreamsPerConnection,
		MaxDestinationStreamsPerPeer: destination.DefaultMaxStreamsPerPeer,
		DefaultInboundPolicy:         string(authz.AllUnauthenticated),
		ClusterNetworks:              inbound.DefaultClusterNetworks,
	}
}

// Validate reports every field that is wrong, by flag name.
func (c *Config) Validate() error {
	var errs []error
	if (c.ManifestsDir == "") == !c.Kubernetes {
		errs = append(errs, errors.New("manifests / kubernetes: set exactly one source: -manifests DIR or -kubernetes"))
	}
	if (c.IdentityDir == "") == (c.IdentitySecret == "") {
		errs = append(errs, errors.New("identity-dir / identity-secret: set exactly one"))
	}
	if c.IdentitySecret != "" && !c.Kubernetes {
		errs = append(errs, errors.New("identity-secret: needs -kubernetes"))
	}
	if c.JoinTokenKey == "" && !c.Kubernetes {
		errs = append(errs, errors.New("join-token-key: required without -kubernetes (workloads prove who they are with join tokens)"))
	}
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
		errs = append(errs, fmt.Errorf("trust-domain: %q: %w", c.TrustDomain, err))
	}
	if c.CertLifetime < 10*time.Second {
		errs = append(errs, fmt.Errorf("cert-lifetime: %s is too short (at least 10s)", c.CertLifetime))
	}
	if c.ClockSkew < 0 || c.ClockSkew > identity.MaxClockSkew {
		errs = append(errs, fmt.Errorf("clock-skew: %s is not between 0 and %s", c.ClockSkew, identity.MaxClockSkew))
	}
	for _, f := range []struct{ name, addr string }{{"grpc-addr", c.GRPCAddr}, {"admin-addr", c.AdminAddr}} {
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port: %w", f.name, f.addr, err))
		}
	}
	if c.KubeAPIQPS <= 0 || c.KubeAPIBurst < 1 {
		errs = append(errs, fmt.Errorf("kube-api-qps / kube-api-burst: must be positive, got %g and %d", c.KubeAPIQPS, c.KubeAPIBurst))
	}
	if c.JoinTokenMaxLifetime <= 0 {
		errs = append(errs, fmt.Errorf("join-token-max-lifetime: must be positive, got %s", c.JoinTokenMaxLifetime))
	}
	if c.CertifyRate <= 0 || c.CertifyBurst < 1 {
		errs = append(errs, fmt.Errorf("certify-rate / certify-burst: must be positive, got %g and %d", c.CertifyRate, c.CertifyBurst))
	}
	if c.MaxStreamsPerConnection == 0 {
		errs = append(errs, errors.New("max-streams-per-connection: must be at least 1"))
	}
	if c.MaxDestinationStreamsPerPeer < 1 {
		errs = append(errs, fmt.Errorf("max-destination-streams-per-peer: must be at least 1, got %d", c.MaxDestinationStreamsPerPeer))
	}
	if err := policyv1.ValidateDefaultPolicy("default-inbound-policy", c.DefaultInboundPolicy); err != nil {
		errs = append(errs, err)
	}
	if c.WebhookAddr != "" {
		if !c.Kubernetes {
			errs = append(errs, errors.New("webhook-addr: the injector needs -kubernetes"))
		}
		if _, _, err := net.SplitHostPort(c.ProxyControllerAddr); err != nil {
			errs = append(errs, fmt.Errorf("proxy-controller-addr: %q is not host:port (required with webhook-addr: the controller's Service, which injected proxies dial): %w", c.ProxyControllerAddr, err))
		}
		if c.WebhookCertDir == "" {
			errs = append(errs, errors.New("webhook-cert-dir: required with webhook-addr (tls.crt, tls.key)"))
		}
		if _, _, err := net.SplitHostPort(c.WebhookAddr); err != nil {
			errs = append(errs, fmt.Errorf("webhook-addr: %q is not host:port: %w", c.WebhookAddr, err))
		}
	}
	if c.APIAddr != "" {
		if host, _, err := net.SplitHostPort(c.APIAddr); err != nil {
			errs = append(errs, fmt.Errorf("api-addr: %q is not host:port: %w", c.APIAddr, err))
		} else if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			errs = append(errs, fmt.Errorf("api-addr: %q is not a loopback address: the metrics API has no authentication of its own, so it is served only on loopback (reach it with a port-forward) or on api-socket", c.APIAddr))
		}
	}
	return errors.Join(errs...)
}
