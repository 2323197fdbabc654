package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/internal/install"
)

// installFlags are the flags of `skein install` (and the few `skein
// uninstall` needs).
type installFlags struct {
	cfg         install.Config
	identityDir string
	trustAnchor string
	mode        string
	gatewayAPI  bool
	grafana     bool
	cluster     clusterFlags
	offline     bool
}

func (f *installFlags) register(flags *pflag.FlagSet, full bool) {
	d := install.Default()
	flags.StringVar(&f.cfg.Namespace, "namespace", d.Namespace, "namespace of the control plane")
	if !full {
		return
	}
	f.cluster.register(flags)
	flags.StringVar(&f.cfg.ControllerImage, "controller-image", d.ControllerImage, "skein-controller image")
	flags.StringVar(&f.cfg.ProxyImage, "proxy-image", d.ProxyImage, "skein-proxy image the injector adds to pods (skein-init runs from it too)")
	flags.StringVar(&f.cfg.ImagePullPolicy, "image-pull-policy", d.ImagePullPolicy, "Always, IfNotPresent or Never")
	flags.StringVar(&f.cfg.TrustDomain, "trust-domain", d.TrustDomain, "trust domain of the mesh's SPIFFE IDs")
	flags.Int32Var(&f.cfg.Replicas, "replicas", d.Replicas, "controller replicas (stateless; more than one for availability)")
	flags.StringVar(&f.cfg.LogLevel, "controller-log-level", d.LogLevel, "debug, info, warn or error")
	flags.StringVar(&f.cfg.PrometheusURL, "prometheus-url", "", "Prometheus that scrapes the proxies, which the controller's golden metrics read (its API, on 127.0.0.1:8085 in its pod, serves tap, authz and trust without it; default: none)")
	flags.StringVar(&f.cfg.DefaultInboundPolicy, "default-inbound-policy", d.DefaultInboundPolicy, "authorization policy of ports no Server selects, unless a pod or namespace annotation skein.io/default-inbound-policy says otherwise: all-unauthenticated, all-authenticated, cluster-authenticated, cluster-unauthenticated, deny or audit")
	flags.StringVar(&f.mode, "identity", string(d.IdentityMode), "generate: render a new issuer Secret; external: the issuer Secret is kept by cert-manager or you")
	flags.StringVar(&f.identityDir, "identity-dir", "", "use the trust material in this directory (`skein identity generate --out`) instead of making new")
	flags.StringVar(&f.trustAnchor, "trust-anchor", "", "PEM file with the trust anchor(s) of an external issuer (required with --identity external)")
	flags.BoolVar(&f.offline, "offline", false, "render without reading the cluster: new trust unless --identity-dir is given (for manifests applied to another cluster later)")
	flags.BoolVar(&f.grafana, "grafana-dashboards", false, "also render Skein's Grafana dashboards (mesh, workload, routes, control plane) as the ConfigMap skein-grafana-dashboards, labelled grafana_dashboard: \"1\" for Grafana's dashboard sidecar")
	flags.BoolVar(&f.gatewayAPI, "gateway-api-crds", false, "also render the Gateway API's HTTPRoute and GRPCRoute CRDs (standard channel, the version this skein was built with); leave it off when the cluster has them already")
}

func (f *installFlags) config() (install.Config, error) {
	cfg := f.cfg
	cfg.IdentityMode = install.IdentityMode(f.mode)
	if f.identityDir != "" {
		m, err := install.LoadIdentityDir(f.identityDir)
		if err != nil {
			return cfg, fmt.Errorf("--identity-dir: %w", err)
		}
		cfg.Identity = m
	}
	if f.trustAnchor != "" {
		data, err := os.ReadFile(f.trustAnchor)
		if err != nil {
			return cfg, fmt.Errorf("--trust-anchor: %w", err)
		}
		cfg.Identity.TrustAnchorPEM = data
	}
	cfg.GatewayAPICRDs = f.gatewayAPI
	cfg.GrafanaDashboards = f.grafana
	return cfg, nil
}

func newInstallCommand() *cobra.Command {
	var f installFlags
	var printValues bool
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Print the manifests that install Skein into a cluster",
		Long: `Prints every object Skein needs (namespace, CRDs, RBAC, identity and webhook
Secrets, the controller, the proxy injector's webhook) as YAML, rendered from
Skein's Helm chart (charts/skein, built in) with values from the flags:

  skein check --pre && skein install | kubectl apply -f - && skein check

When the cluster (the usual kubeconfig rules, --kubeconfig, --context)
already has Skein, install keeps the trust it finds: the issuer Secret, trust
anchors, join-token key and webhook certificate, so that applying again
leaves every running proxy working. It refuses, saying why, when what it finds
is inconsistent or when --identity-dir or --trust-anchor give other material.
With no cluster reachable (or --offline) it generates new trust unless
--identity-dir is given, and says so on stderr.

Routes (HTTPRoute, GRPCRoute) need the Gateway API CRDs in the cluster. Skein
works with the ones already there (skein check says which version) and renders
its own copy only with --gateway-api-crds; skein uninstall never deletes them.

--grafana-dashboards adds Skein's Grafana dashboards as a ConfigMap for
Grafana's dashboard sidecar (label grafana_dashboard: "1").
See docs/install.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config()
			if err != nil {
				return err
			}
			if f.offline {
				noteNewTrust(&cfg, cmd.ErrOrStderr(), "--offline")
			} else if client, err := f.cluster.reach(); err != nil {
				noteNewTrust(&cfg, cmd.ErrOrStderr(), fmt.Sprintf("no cluster reachable (%v)", err))
			} else if err := keepInstalledTrust(cmd.Context(), client, &cfg, cmd.ErrOrStderr()); err != nil {
				return err
			}
			if printValues {
				return writeValues(cmd.OutOrStdout(), cfg)
			}
			out, err := install.Render(cfg)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f.register(cmd.Flags(), true)
	cmd.Flags().BoolVar(&printValues, "print-values", false, "print the Helm values of charts/skein this install would render (trust material included, secret: keep it so) instead of the manifests, for helm install -f")
	return cmd
}

// writeValues prints the chart's values for cfg, trust material made as
// install makes it, as YAML for `helm install -f`.
func writeValues(w io.Writer, cfg install.Config) error {
	cfg, err := install.Prepare(cfg)
	if err != nil {
		return err
	}
	data, err := yaml.Marshal(install.Values(cfg))
	if err != nil {
		return fmt.Errorf("encoding the values: %w", err)
	}
	_, err = fmt.Fprintf(w, "# Values of charts/skein, from `skein install --print-values`; they hold private keys.\n# Install with: helm install %s charts/skein -n %s --create-namespace -f THIS_FILE\n%s", install.ReleaseName, cfg.Namespace, data)
	return err
}
