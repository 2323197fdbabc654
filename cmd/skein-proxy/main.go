// Command skein-proxy is the mesh's sidecar: the data plane beside every
// workload. Every flag can also be set through the environment variable
// SKEIN_PROXY_<FLAG> (upper case, dashes as underscores); flags win.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skeinmesh/skein/internal/admin"
	"github.com/skeinmesh/skein/internal/envflag"
	"github.com/skeinmesh/skein/internal/fips"
	"github.com/skeinmesh/skein/internal/proxy"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "await" {
		if err := await(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "skein-proxy await:", err)
			os.Exit(1)
		}
		return
	}
	cfg, ps, err := parseConfig(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "skein-proxy:", err)
		os.Exit(2)
	}
	cfg.Log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: ps.logLevel}))
	ps.tuneRuntime()
	cfg.Log.Info("skein-proxy starting", append(fips.LogAttrs(), "cores", runtime.GOMAXPROCS(0), "gc_percent", ps.effectiveGCPercent())...)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := proxy.Run(ctx, cfg); err != nil {
		cfg.Log.Error("proxy failed", "err", err)
		os.Exit(1)
	}
}

// await is `skein-proxy await`: it returns once the proxy beside it is
// ready. The injector runs it as the proxy's postStart hook where the proxy
// is a regular container, so that the application's containers start after
// it (the kubelet starts containers in order, each after the previous
// one's postStart hook).
func await(args []string) error {
	fs := flag.NewFlagSet("skein-proxy await", flag.ContinueOnError)
	addr := fs.String("admin-addr", "127.0.0.1:4191", "the proxy's admin address")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	return admin.AwaitReady(ctx, "http://"+*addr+"/ready", 100*time.Millisecond)
}

func parseConfig(args []string) (proxy.Config, processSettings, error) {
	cfg := proxy.Default()
	ps := defaultProcessSettings()
	fs := flag.NewFlagSet("skein-proxy", flag.ContinueOnError)
	fs.StringVar(&cfg.OutboundAddr, "outbound-addr", cfg.OutboundAddr, "listen address for the workload's redirected outgoing connections")
	fs.StringVar(&cfg.InboundAddr, "inbound-addr", cfg.InboundAddr, "listen address for redirected incoming connections")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", cfg.AdminAddr, "listen address of the admin server (/metrics, /ready, /live, /shutdown)")
	mode := fs.String("mode", string(cfg.Mode), "how connections are redirected: redirect or tproxy")
	fs.StringVar(&cfg.DiscoveryFile, "discovery-file", "", "YAML file of destinations, watched for changes (without a controller)")
	fs.StringVar(&cfg.ControllerAddr, "controller-addr", "", "the controller's gRPC address, host:port")
	fs.StringVar(&cfg.ControllerID, "controller-id", "", "SPIFFE ID the controller must present (default spiffe://<trust domain>/skein/controller)")
	fs.StringVar(&cfg.TrustAnchorsFile, "trust-anchors", "", "PEM file of the mesh's trust anchors")
	fs.StringVar(&cfg.TrustAnchorsPEM, "trust-anchors-pem", "", "the mesh's trust anchors as PEM text, instead of a file")
	fs.StringVar(&cfg.TrustAnchorsKeep, "trust-anchors-keep", "", "a file to keep the anchors the controller sends in, and to start from when it exists (a restarted container: the injector puts it on a pod-lifetime volume)")
	fs.StringVar(&cfg.Identity, "identity", "", "this workload's SPIFFE ID, spiffe://<trust domain>/ns/<namespace>/sa/<service account>")
	fs.StringVar(&cfg.TokenFile, "token-file", "", "file with the token that proves the identity (re-read at every renewal)")
	fs.DurationVar(&cfg.ClockSkew, "clock-skew", cfg.ClockSkew, "how far this proxy's clock may lag the controller's when taking a new certificate")
	inboundPorts := fs.String("inbound-ports", "", "comma-separated ports the application serves, whose inbound policy is watched from startup (at most 64)")
	opaque := fs.String("opaque-ports", "", "comma-separated ports on which protocol detection is skipped")
	probeTCP := fs.String("probe-tcp-ports", "", "comma-separated application ports whose TCP probes the admin server runs, as GET /probe/tcp/PORT (the injector sets it)")
	fs.BoolVar(&cfg.RequireMTLS.All, "require-mtls", false, "refuse plaintext connections from the network on every inbound port (needs -identity)")
	requireMTLSPorts := fs.String("require-mtls-ports", "", "comma-separated inbound ports that refuse plaintext connections from the network (needs -identity)")
	fs.DurationVar(&cfg.DetectTimeout, "detect-timeout", cfg.DetectTimeout, "how long to wait for a client's first bytes")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", cfg.DrainDelay, "on shutdown, how long to keep accepting connections while /ready says draining")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", cfg.ShutdownGrace, "on shutdown, how long in-flight work may finish after accepting stopped")
	fs.DurationVar(&cfg.OpaqueIdleTimeout, "opaque-idle-timeout", cfg.OpaqueIdleTimeout, "close an opaque TCP connection after this long with no byte either way")
	fs.DurationVar(&cfg.TunnelIdleTimeout, "tunnel-idle-timeout", cfg.TunnelIdleTimeout, "close a WebSocket/upgraded or CONNECT tunnel after this long with no byte either way")
	fs.IntVar(&cfg.MaxConnections, "max-connections", cfg.MaxConnections, "connections each of the inbound and outbound listeners holds at once; more are closed at accept")
	fs.IntVar(&cfg.MaxConnectionsPerSource, "max-connections-per-source", cfg.MaxConnectionsPerSource, "inbound connections from one source IP held at once; more are closed at accept")
	labels := fs.String("labels", "", "the workload's own labels for metrics, as k=v,k=v")
	metricsFrom := fs.String("metrics-allow-cidrs", "", "comma-separated networks (CIDR) that may scrape /metrics; empty: every client")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	fs.IntVar(&ps.cores, "cores", ps.cores, "how many cores the proxy's goroutines run on at once (Go's GOMAXPROCS, which wins when set); 0: every core")
	fs.IntVar(&ps.gcPercent, "gc-percent", ps.gcPercent, "how far the heap grows between garbage collections, in percent of what is live (Go's GOGC, which wins when set)")

	if err := fs.Parse(args); err != nil {
		return cfg, ps, err
	}
	if err := envflag.Apply(fs, "SKEIN_PROXY"); err != nil {
		return cfg, ps, err
	}
	if ps.cores < 0 {
		return cfg, ps, fmt.Errorf("-cores: must not be negative, got %d", ps.cores)
	}
	if ps.gcPercent <= 0 {
		return cfg, ps, fmt.Errorf("-gc-percent: must be positive, got %d", ps.gcPercent)
	}
	cfg.Mode = proxy.Mode(*mode)
	var err error
	if cfg.InboundPorts, err = parsePorts(*inboundPorts); err != nil {
		return cfg, ps, fmt.Errorf("-inbound-ports: %w", err)
	}
	if cfg.OpaquePorts, err = parsePorts(*opaque); err != nil {
		return cfg, ps, fmt.Errorf("-opaque-ports: %w", err)
	}
	if cfg.ProbeTCPPorts, err = parsePorts(*probeTCP); err != nil {
		return cfg, ps, fmt.Errorf("-probe-tcp-ports: %w", err)
	}
	if cfg.RequireMTLS.Ports, err = parsePorts(*requireMTLSPorts); err != nil {
		return cfg, ps, fmt.Errorf("-require-mtls-ports: %w", err)
	}
	if cfg.Labels, err = parseLabels(*labels); err != nil {
		return cfg, ps, fmt.Errorf("-labels: %w", err)
	}
	if cfg.MetricsAllowCIDRs, err = parsePrefixes(*metricsFrom); err != nil {
		return cfg, ps, fmt.Errorf("-metrics-allow-cidrs: %w", err)
	}
	if err := ps.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return cfg, ps, fmt.Errorf("-log-level: %w", err)
	}
	return cfg, ps, cfg.Validate()
}

func parsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.ParseUint(f, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("%q is not a port", f)
		}
		ports = append(ports, uint16(p))
	}
	return ports, nil
}

func parsePrefixes(s string) ([]netip.Prefix, error) {
	var prefixes []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a network in CIDR form (10.0.0.0/8): %w", f, err)
		}
		prefixes = append(prefixes, p.Masked())
	}
	return prefixes, nil
}

func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		labels[k] = v
	}
	return labels, nil
}
