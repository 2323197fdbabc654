package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/skeinmesh/skein/internal/controller/inject"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/install/installed"
)

func newInjectCommand() *cobra.Command {
	cfg := inject.DefaultConfig()
	var anchors, namespace string
	var cluster clusterFlags
	cmd := &cobra.Command{
		Use:   "inject",
		Short: "Add the skein proxy to the workloads in YAML on standard input",
		Long: `Reads Kubernetes manifests (multi-document YAML) on standard input and
writes them to standard output with the skein-init step and the skein-proxy
sidecar added to every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
Job and CronJob, as the injector webhook would. Pod templates annotated
skein.io/inject: disabled, and workloads already injected, are left alone;
every other document passes through unchanged.

  kubectl get deploy web -o yaml | skein inject | kubectl apply -f -

The installed mesh (its namespace, trust anchors, proxy image and trust
domain) is read from the cluster (--kubeconfig, --context); flags given
override it. With no cluster reachable, --trust-anchors is required and the
other flags' defaults are used.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if anchors != "" {
				pem, err := os.ReadFile(anchors)
				if err != nil {
					return fmt.Errorf("--trust-anchors: %w", err)
				}
				cfg.TrustAnchorsPEM = string(pem)
			}
			if err := fromInstalledMesh(cmd.Context(), &cluster, cmd.Flags(), &cfg, &namespace, cmd.ErrOrStderr()); err != nil {
				return err
			}
			if cfg.ControllerAddr == "" {
				cfg.ControllerAddr = install.ControllerAddr(namespace)
			}
			return inject.Manifests(cmd.InOrStdin(), cmd.OutOrStdout(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&anchors, "trust-anchors", "", "PEM file of the mesh's trust anchors, ca.crt (default: the installed mesh's; required when no cluster is reachable)")
	f.StringVar(&cfg.ProxyImage, "proxy-image", cfg.ProxyImage, "image with skein-proxy and skein-init (default: the installed injector's)")
	f.StringVar(&cfg.ProxyVersion, "proxy-version", "", "value of the skein.io/proxy-version annotation (default: the image's tag)")
	f.StringVar(&namespace, "namespace", install.Default().Namespace, "namespace Skein was installed in (default: the installed mesh's, found from its webhook): the proxies dial its controller")
	f.StringVar(&cfg.ControllerAddr, "controller-addr", "", "the controller's gRPC address, host:port (default: its Service in --namespace)")
	f.StringVar(&cfg.TrustDomain, "trust-domain", cfg.TrustDomain, "trust domain of the workloads' SPIFFE IDs (default: the installed mesh's)")
	f.BoolVar(&cfg.NativeSidecars, "native-sidecars", cfg.NativeSidecars, "run the proxy as a native sidecar (an init container with restartPolicy Always; Kubernetes 1.29+)")
	cluster.register(f)
	return cmd
}

// fromInstalledMesh fills what flags did not give from the mesh installed
// in the cluster. Without a cluster it needs the trust anchors from a flag,
// and says what it used otherwise.
func fromInstalledMesh(ctx context.Context, cluster *clusterFlags, flags *pflag.FlagSet, cfg *inject.Config, namespace *string, stderr io.Writer) error {
	client, err := cluster.reach()
	if err != nil {
		if cfg.TrustAnchorsPEM == "" {
			return fmt.Errorf("no cluster reachable to read the installed mesh from (%v): give --trust-anchors (the mesh's ca.crt), and --namespace, --proxy-image and --trust-domain when not the defaults", err)
		}
		fmt.Fprintf(stderr, "skein: no cluster reachable (%v): injecting for namespace %s, image %s, trust domain %s\n", err, *namespace, cfg.ProxyImage, cfg.TrustDomain)
		return nil
	}
	if *namespace, err = installedNamespace(ctx, client, flags, *namespace); err != nil {
		return err
	}
	m, err := installed.Read(ctx, client, *namespace)
	if err != nil {
		return fmt.Errorf("reading the installed mesh: %w", err)
	}
	if m == nil {
		if cfg.TrustAnchorsPEM == "" {
			return fmt.Errorf("no skein installed in namespace %s: install it first, or give --trust-anchors", *namespace)
		}
		return nil
	}
	if cfg.TrustAnchorsPEM == "" {
		if len(m.Identity.TrustAnchorPEM) == 0 {
			return errors.New("the installed mesh has no trust anchors (issuer Secret and ConfigMap " + install.TrustAnchorsConfigMapName + " missing): give --trust-anchors")
		}
		cfg.TrustAnchorsPEM = string(m.Identity.TrustAnchorPEM)
	}
	if !flags.Changed("proxy-image") && m.ProxyImage != "" {
		cfg.ProxyImage = m.ProxyImage
	}
	if !flags.Changed("trust-domain") && m.Recorded != nil {
		cfg.TrustDomain = m.Recorded.TrustDomain
	}
	return nil
}
