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
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
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
	TrustDomain  string
	CertLifetime time.Duration

	GRPCAddr  string
	AdminAddr string
	// PrometheusURL is where the metrics API sends its PromQL; without it
	// the metrics API is not served.
	PrometheusURL string
	// APISocket is a unix socket for the metrics API (the local mesh's
	// CLI); APIAddr a TCP address for it. Either, both or neither.
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
	Log                 *slog.Logger
}

// Default returns a Config with the usual addresses.
func Default() Config {
	return Config{
		TrustDomain:  "cluster.local",
		CertLifetime: 24 * time.Hour,
		GRPCAddr:     "0.0.0.0:8086",
		AdminAddr:    "0.0.0.0:9996",
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
	for _, f := range []struct{ name, addr string }{{"grpc-addr", c.GRPCAddr}, {"admin-addr", c.AdminAddr}} {
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port: %w", f.name, f.addr, err))
		}
	}
	if (c.APISocket != "" || c.APIAddr != "") && c.PrometheusURL == "" {
		errs = append(errs, errors.New("prometheus-url: required to serve the metrics API (api-socket, api-addr)"))
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
		if _, _, err := net.SplitHostPort(c.APIAddr); err != nil {
			errs = append(errs, fmt.Errorf("api-addr: %q is not host:port: %w", c.APIAddr, err))
		}
	}
	return errors.Join(errs...)
}
