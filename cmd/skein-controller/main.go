// Command skein-controller is the mesh's control plane: destination,
// identity and policy services for the proxies. Every flag can also be set
// through SKEIN_CONTROLLER_<FLAG> (upper case, dashes as underscores); flags
// win.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/skeinmesh/skein/internal/controller"
	"github.com/skeinmesh/skein/internal/envflag"
	"github.com/skeinmesh/skein/internal/fips"
)

func main() {
	cfg, level, err := parseConfig(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "skein-controller:", err)
		os.Exit(2)
	}
	cfg.Log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Log.Info("skein-controller starting", fips.LogAttrs()...)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := controller.Run(ctx, cfg); err != nil {
		cfg.Log.Error("controller failed", "err", err)
		os.Exit(1)
	}
}

func parseConfig(args []string) (controller.Config, slog.Level, error) {
	cfg := controller.Default()
	fs := flag.NewFlagSet("skein-controller", flag.ContinueOnError)
	fs.StringVar(&cfg.ManifestsDir, "manifests", "", "directory of YAML manifests (Service, Workload) to serve, watched for changes")
	fs.BoolVar(&cfg.Kubernetes, "kubernetes", false, "read services and workloads from the Kubernetes API server")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig for -kubernetes; empty means in-cluster")
	fs.Float64Var(&cfg.KubeAPIQPS, "kube-api-qps", cfg.KubeAPIQPS, "requests per second to the Kubernetes API server (informers, TokenReviews)")
	fs.IntVar(&cfg.KubeAPIBurst, "kube-api-burst", cfg.KubeAPIBurst, "requests at once to the Kubernetes API server")
	fs.StringVar(&cfg.ServiceAccountIssuer, "service-account-issuer", "", "issuer (iss) of the cluster's service-account tokens; empty: the one in the controller's own token")
	fs.StringVar(&cfg.IdentityDir, "identity-dir", "", "directory with the issuer: tls.crt, tls.key, ca.crt (watched)")
	fs.StringVar(&cfg.IdentitySecret, "identity-secret", "", "Kubernetes Secret namespace/name with the issuer (tls.crt, tls.key, ca.crt)")
	fs.StringVar(&cfg.JoinTokenKey, "join-token-key", "", "PEM public key (join-token.pub) that verifies join tokens of workloads outside Kubernetes; the signing key is also accepted, only its public half is used")
	fs.DurationVar(&cfg.JoinTokenMaxLifetime, "join-token-max-lifetime", cfg.JoinTokenMaxLifetime, "longest life (exp - iat) of a join token the controller accepts")
	fs.StringVar(&cfg.TrustDomain, "trust-domain", cfg.TrustDomain, "trust domain of the mesh's SPIFFE IDs")
	fs.DurationVar(&cfg.CertLifetime, "cert-lifetime", cfg.CertLifetime, "life of the workload certificates the controller issues")
	fs.DurationVar(&cfg.ClockSkew, "clock-skew", cfg.ClockSkew, "how far before now issued certificates' NotBefore is set, for peers whose clocks lag (at most 10m)")
	fs.Float64Var(&cfg.CertifyRate, "certify-rate", cfg.CertifyRate, "certificate requests per second allowed from one client IP")
	fs.IntVar(&cfg.CertifyBurst, "certify-burst", cfg.CertifyBurst, "certificate requests at once allowed from one client IP")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cfg.GRPCAddr, "listen address of the destination, identity and policy services (TLS)")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", cfg.AdminAddr, "listen address of /metrics, /ready and /live")
	fs.Func("max-streams-per-connection", fmt.Sprintf("most concurrent gRPC streams on one client connection (default %d)", cfg.MaxStreamsPerConnection), func(s string) error {
		n, err := strconv.ParseUint(s, 10, 32)
		cfg.MaxStreamsPerConnection = uint32(n)
		return err
	})
	fs.IntVar(&cfg.MaxDestinationStreamsPerPeer, "max-destination-streams-per-peer", cfg.MaxDestinationStreamsPerPeer, "most destination streams, and apart from them most policy streams, one client IP address may hold open; more are refused with RESOURCE_EXHAUSTED")
	fs.StringVar(&cfg.PrometheusURL, "prometheus-url", "", "Prometheus the metrics API queries, e.g. http://127.0.0.1:9090")
	fs.StringVar(&cfg.APISocket, "api-socket", "", "unix socket to serve the metrics API on (the local mesh's CLI)")
	fs.StringVar(&cfg.APIAddr, "api-addr", "", "TCP address to serve the metrics API on")
	fs.StringVar(&cfg.WebhookAddr, "webhook-addr", "", "listen address of the proxy injector (admission webhook, HTTPS, path /inject); needs -kubernetes")
	fs.StringVar(&cfg.WebhookCertDir, "webhook-cert-dir", "", "directory with the injector's tls.crt and tls.key (re-read at every handshake)")
	fs.StringVar(&cfg.ProxyImage, "proxy-image", "", "image of the proxies the injector adds (default: the injector's)")
	fs.StringVar(&cfg.ProxyControllerAddr, "proxy-controller-addr", "", "address the injected proxies dial to reach the controller, host:port (required with -webhook-addr), e.g. skein-controller.skein.svc.cluster.local:8086")
	fs.StringVar(&cfg.DefaultInboundPolicy, "default-inbound-policy", cfg.DefaultInboundPolicy, "authorization policy of ports no Server selects, unless the pod or namespace annotation skein.io/default-inbound-policy says otherwise: all-unauthenticated, all-authenticated, cluster-authenticated, cluster-unauthenticated, deny or audit")
	fs.Func("cluster-networks", "comma-separated CIDRs of the cluster-* default policies (default "+prefixList(cfg.ClusterNetworks)+")", func(s string) error {
		var nets []netip.Prefix
		for part := range strings.SplitSeq(s, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(part))
			if err != nil {
				return err
			}
			nets = append(nets, p.Masked())
		}
		cfg.ClusterNetworks = nets
		return nil
	})
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return cfg, 0, err
	}
	if err := envflag.Apply(fs, "SKEIN_CONTROLLER"); err != nil {
		return cfg, 0, err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return cfg, 0, fmt.Errorf("-log-level: %w", err)
	}
	return cfg, lvl, cfg.Validate()
}

func prefixList(ps []netip.Prefix) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return strings.Join(out, ",")
}
