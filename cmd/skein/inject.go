package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/controller/inject"
	"github.com/skeinmesh/skein/internal/install"
)

func newInjectCommand() *cobra.Command {
	cfg := inject.DefaultConfig()
	var anchors, namespace string
	cmd := &cobra.Command{
		Use:   "inject",
		Short: "Add the skein proxy to the workloads in YAML on standard input",
		Long: `Reads Kubernetes manifests (multi-document YAML) on standard input and
writes them to standard output with the skein-init step and the skein-proxy
sidecar added to every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
Job and CronJob, as the injector webhook would. Pod templates annotated
skein.io/inject: disabled, and workloads already injected, are left alone;
every other document passes through unchanged.

  kubectl get deploy web -o yaml | skein inject | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pem, err := os.ReadFile(anchors)
			if err != nil {
				return fmt.Errorf("--trust-anchors: %w", err)
			}
			cfg.TrustAnchorsPEM = string(pem)
			if cfg.ControllerAddr == "" {
				cfg.ControllerAddr = install.ControllerAddr(namespace)
			}
			return inject.Manifests(cmd.InOrStdin(), cmd.OutOrStdout(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&anchors, "trust-anchors", "", "PEM file of the mesh's trust anchors, ca.crt (required)")
	_ = cmd.MarkFlagRequired("trust-anchors")
	f.StringVar(&cfg.ProxyImage, "proxy-image", cfg.ProxyImage, "image with skein-proxy and skein-init")
	f.StringVar(&cfg.ProxyVersion, "proxy-version", "", "value of the skein.io/proxy-version annotation (default: the image's tag)")
	f.StringVar(&namespace, "namespace", install.Default().Namespace, "namespace Skein was installed in (skein install --namespace): the proxies dial its controller")
	f.StringVar(&cfg.ControllerAddr, "controller-addr", "", "the controller's gRPC address, host:port (default: its Service in --namespace)")
	f.StringVar(&cfg.TrustDomain, "trust-domain", cfg.TrustDomain, "trust domain of the workloads' SPIFFE IDs")
	f.BoolVar(&cfg.NativeSidecars, "native-sidecars", cfg.NativeSidecars, "run the proxy as a native sidecar (an init container with restartPolicy Always; Kubernetes 1.29+)")
	return cmd
}
