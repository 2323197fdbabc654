package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/proxy/authzclient"
	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/identity"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/mirror"
)

// Mode says how redirected connections reach the proxy.
type Mode string

const (
	// ModeRedirect: iptables REDIRECT; the original destination comes from
	// SO_ORIGINAL_DST.
	ModeRedirect Mode = "redirect"
	// ModeTProxy: inbound connections arrive through TPROXY; the original
	// destination is the socket's local address and the application sees
	// the client's own source address.
	ModeTProxy Mode = "tproxy"
)

// Config is everything the proxy needs to run.
type Config struct {
	OutboundAddr string
	InboundAddr  string
	AdminAddr    string
	Mode         Mode
	// DiscoveryFile is a YAML file of destinations (see discovery.File);
	// empty means no discovery: everything goes to its original destination.
	// ControllerAddr replaces it.
	DiscoveryFile string
	// ControllerAddr is the controller's gRPC address (host:port). With it,
	// destinations come from its destination service, which answers only
	// clients with a mesh certificate: it needs Identity.
	ControllerAddr string
	// ControllerID is the identity the controller must present; empty means
	// spiffe://<trust domain>/skein/controller (meshid.Controller), which no
	// workload can be certified as.
	ControllerID string
	// TrustAnchorsFile holds the mesh's trust anchors (PEM); needed to talk
	// to the controller and to other proxies. TrustAnchorsPEM gives them
	// inline instead (the injector puts them in the proxy's environment).
	TrustAnchorsFile string
	TrustAnchorsPEM  string
	// TrustAnchorsKeep, when set, is a file where the proxy keeps the
	// anchors the controller sends, and starts from when it exists (a
	// restarted container; see identity.Anchors.KeepIn). The injector sets
	// it on the pod's skein-proxy-state volume.
	TrustAnchorsKeep string
	// Identity is this workload's SPIFFE ID. With it the proxy gets a
	// certificate from the controller, is not ready until it has one, and
	// speaks mutual TLS with every meshed peer.
	Identity string
	// TokenFile holds the token that proves Identity (a projected
	// service-account token, or a join token); re-read at every renewal.
	TokenFile string
	// ClockSkew is how far this proxy's clock may lag the controller's
	// when it checks a certificate it was just given (identity.Config).
	ClockSkew time.Duration
	// InboundPorts are the application's own ports (Linkerd's
	// LINKERD2_PROXY_INBOUND_PORTS): with a controller, their inbound
	// policies are watched from startup, so a replica that never served a
	// port still knows its policy when the controller is away. Other
	// ports are watched from their first request. At most
	// MaxInboundPorts.
	InboundPorts []uint16
	// OpaquePorts skip protocol detection (server-speaks-first protocols).
	OpaquePorts []uint16
	// ProbeTCPPorts are the application's ports whose kubelet TCP probes
	// the injector turned into GET /probe/tcp/PORT on the admin port
	// (admin.Config.ProbeTCPPorts). At most MaxInboundPorts.
	ProbeTCPPorts []uint16
	// RequireMTLS says which inbound ports refuse plaintext from the
	// network; it needs Identity.
	RequireMTLS RequireMTLS
	// DetectTimeout bounds how long the proxy waits for a client's first
	// bytes before treating the connection as opaque.
	DetectTimeout time.Duration
	// DrainDelay is how long the proxy keeps accepting connections after
	// it was told to stop, while /ready says it is draining: endpoint
	// removal lags pod termination, so new connections keep arriving for a
	// few seconds.
	DrainDelay time.Duration
	// ShutdownGrace is how long in-flight work may finish once the proxy has
	// stopped accepting; what is left then is closed. DrainDelay plus
	// ShutdownGrace should stay under the pod's termination grace period.
	ShutdownGrace time.Duration
	// OpaqueIdleTimeout closes an opaque TCP connection, on both sides,
	// when no byte has moved either way for that long.
	OpaqueIdleTimeout time.Duration
	// TunnelIdleTimeout does the same for the byte tunnels HTTP turns into
	// (WebSocket and other upgrades, CONNECT).
	TunnelIdleTimeout time.Duration
	// MaxConnections caps the connections each of the inbound and outbound
	// listeners holds at once, from accept (protocol detection included)
	// to close; one past it is closed at once.
	MaxConnections int
	// MaxConnectionsPerSource caps the inbound connections from one source
	// IP address.
	MaxConnectionsPerSource int
	// Labels are the workload's own labels, put on every metric.
	Labels map[string]string
	// MetricsAllowCIDRs limits the admin port's /metrics to clients in
	// these networks (and loopback); empty lets every client scrape.
	MetricsAllowCIDRs []netip.Prefix
	Balance           balance.Options
	Log               *slog.Logger
}

// RequireMTLS is which inbound ports accept only mesh TLS from the network:
// every port with All, else those in Ports. Connections from the workload's
// own loopback are always served.
type RequireMTLS struct {
	All   bool
	Ports []uint16
}

func (r RequireMTLS) enabled() bool { return r.All || len(r.Ports) > 0 }

// covers reports whether port refuses plaintext from the network.
func (r RequireMTLS) covers(port uint16) bool {
	return r.All || slices.Contains(r.Ports, port)
}

// MaxInboundPorts bounds Config.InboundPorts: the watches they open are
// held for the proxy's life.
const MaxInboundPorts = authzclient.MaxKnownPorts

// Default returns a Config with the ports of DESIGN.md.
func Default() Config {
	return Config{
		OutboundAddr:  "127.0.0.1:4140",
		InboundAddr:   "0.0.0.0:4143",
		AdminAddr:     "0.0.0.0:4191",
		Mode:          ModeRedirect,
		DetectTimeout: 5 * time.Second,
		// 5 s + 20 s stays under Kubernetes' default 30 s
		// terminationGracePeriodSeconds.
		DrainDelay:    5 * time.Second,
		ShutdownGrace: 20 * time.Second,
		// Envoy's tcp_proxy idle_timeout default.
		OpaqueIdleTimeout:       time.Hour,
		TunnelIdleTimeout:       time.Hour,
		MaxConnections:          10_000,
		MaxConnectionsPerSource: 1_000,
		ClockSkew:               identity.DefaultClockSkew,
		Balance:                 balance.DefaultOptions(),
	}
}

// Validate reports every field that is wrong, by name.
func (c *Config) Validate() error {
	var errs []error
	for _, f := range []struct{ name, addr string }{
		{"outbound-addr", c.OutboundAddr},
		{"inbound-addr", c.InboundAddr},
		{"admin-addr", c.AdminAddr},
	} {
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port: %w", f.name, f.addr, err))
		}
	}
	if !slices.Contains([]Mode{ModeRedirect, ModeTProxy}, c.Mode) {
		errs = append(errs, fmt.Errorf("mode: %q is neither %q nor %q", c.Mode, ModeRedirect, ModeTProxy))
	}
	if c.DetectTimeout <= 0 {
		errs = append(errs, fmt.Errorf("detect-timeout: must be positive, got %s", c.DetectTimeout))
	}
	if c.ShutdownGrace < 0 {
		errs = append(errs, fmt.Errorf("shutdown-grace: must not be negative, got %s", c.ShutdownGrace))
	}
	errs = append(errs, c.validateLimits()...)
	for _, p := range c.OpaquePorts {
		if p == 0 {
			errs = append(errs, errors.New("opaque-ports: port 0 is not a port"))
		}
	}
	if len(c.InboundPorts) > MaxInboundPorts {
		errs = append(errs, fmt.Errorf("inbound-ports: %d ports, at most %d", len(c.InboundPorts), MaxInboundPorts))
	}
	for _, p := range c.InboundPorts {
		if p == 0 {
			errs = append(errs, errors.New("inbound-ports: port 0 is not a port"))
		}
	}
	if len(c.ProbeTCPPorts) > MaxInboundPorts {
		errs = append(errs, fmt.Errorf("probe-tcp-ports: %d ports, at most %d", len(c.ProbeTCPPorts), MaxInboundPorts))
	}
	for _, p := range c.ProbeTCPPorts {
		if p == 0 {
			errs = append(errs, errors.New("probe-tcp-ports: port 0 is not a port"))
		}
	}
	for _, p := range c.RequireMTLS.Ports {
		if p == 0 {
			errs = append(errs, errors.New("require-mtls-ports: port 0 is not a port"))
		}
	}
	if c.RequireMTLS.enabled() && c.Identity == "" {
		errs = append(errs, errors.New("require-mtls / require-mtls-ports: need identity: without a certificate the proxy can accept no mTLS, so every connection would be refused"))
	}
	for _, p := range c.MetricsAllowCIDRs {
		if !p.IsValid() {
			errs = append(errs, errors.New("metrics-allow-cidrs: an empty network"))
		}
	}
	errs = append(errs, c.validateControlPlane()...)
	if err := metrics.ValidateConstLabels(c.Labels); err != nil {
		errs = append(errs, fmt.Errorf("labels: %w", err))
	}
	if err := mirror.ValidateConstLabels(c.Labels); err != nil {
		errs = append(errs, fmt.Errorf("labels: %w", err))
	}
	if err := c.Balance.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("balance: %w", err))
	}
	return errors.Join(errs...)
}

func (c *Config) validateLimits() []error {
	var errs []error
	if c.DrainDelay < 0 {
		errs = append(errs, fmt.Errorf("drain-delay: must not be negative, got %s", c.DrainDelay))
	}
	if c.OpaqueIdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("opaque-idle-timeout: must be positive, got %s", c.OpaqueIdleTimeout))
	}
	if c.TunnelIdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("tunnel-idle-timeout: must be positive, got %s", c.TunnelIdleTimeout))
	}
	if c.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("max-connections: must be at least 1, got %d", c.MaxConnections))
	}
	switch {
	case c.MaxConnectionsPerSource < 1:
		errs = append(errs, fmt.Errorf("max-connections-per-source: must be at least 1, got %d", c.MaxConnectionsPerSource))
	case c.MaxConnectionsPerSource > c.MaxConnections:
		errs = append(errs, fmt.Errorf("max-connections-per-source: %d is more than max-connections %d", c.MaxConnectionsPerSource, c.MaxConnections))
	}
	return errs
}

func (c *Config) validateControlPlane() []error {
	var errs []error
	if c.ControllerAddr != "" {
		if _, _, err := net.SplitHostPort(c.ControllerAddr); err != nil {
			errs = append(errs, fmt.Errorf("controller-addr: %q is not host:port: %w", c.ControllerAddr, err))
		}
		if c.DiscoveryFile != "" {
			errs = append(errs, errors.New("discovery-file: not with controller-addr: choose one source of destinations"))
		}
		if (c.TrustAnchorsFile == "") == (c.TrustAnchorsPEM == "") {
			errs = append(errs, errors.New("trust-anchors / trust-anchors-pem: exactly one is required with controller-addr, to check the controller is who it says"))
		}
		if c.Identity == "" {
			errs = append(errs, errors.New("identity: required with controller-addr: the controller serves discovery only to clients with a mesh certificate"))
		}
	}
	if c.ClockSkew < 0 {
		errs = append(errs, fmt.Errorf("clock-skew: must not be negative, got %s", c.ClockSkew))
	}
	if c.Identity != "" {
		if _, err := spiffeid.FromString(c.Identity); err != nil {
			errs = append(errs, fmt.Errorf("identity: %q is not a SPIFFE ID: %w", c.Identity, err))
		}
		if c.ControllerAddr == "" {
			errs = append(errs, errors.New("controller-addr: required with identity, to certify it"))
		}
		if c.TokenFile == "" {
			errs = append(errs, errors.New("token-file: required with identity, to prove it"))
		}
	}
	if c.ControllerID != "" {
		if id, err := spiffeid.FromString(c.ControllerID); err != nil {
			errs = append(errs, fmt.Errorf("controller-id: %q is not a SPIFFE ID: %w", c.ControllerID, err))
		} else if !meshid.IsControlPlane(id) {
			// A workload identity: whoever owns that namespace could be
			// certified as it and would see every proxy's token.
			errs = append(errs, fmt.Errorf("controller-id: %s is a workload's identity, not the control plane's (spiffe://<trust domain>/skein/...)", id))
		}
	}
	return errs
}

// controllerID is the identity the controller must present.
func (c *Config) controllerID() spiffeid.ID {
	if c.ControllerID != "" {
		return spiffeid.RequireFromString(c.ControllerID)
	}
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	if c.Identity != "" {
		td = spiffeid.RequireFromString(c.Identity).TrustDomain()
	}
	return meshid.Controller(td)
}
