package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/install/installed"
)

// clusterFlags say which cluster a command reads the installed mesh from.
type clusterFlags struct {
	kubeconfig, context string
}

func (f *clusterFlags) register(flags *pflag.FlagSet) {
	flags.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster to read the installed mesh from (default: $KUBECONFIG, then ~/.kube/config)")
	flags.StringVar(&f.context, "context", "", "kubeconfig context (default: the current one)")
}

// reachTimeout bounds the first call that tells whether a cluster answers.
const reachTimeout = 5 * time.Second

// reach returns a client of the cluster, or an error when there is no
// kubeconfig or its API server does not answer.
func (f *clusterFlags) reach() (kubernetes.Interface, error) {
	restConfig, err := f.reachConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(restConfig)
}

// reachConfig returns the client configuration of the cluster, or an
// error when there is no kubeconfig or its API server does not answer.
func (f *clusterFlags) reachConfig() (*rest.Config, error) {
	restConfig, err := loadKubeconfig(f.kubeconfig, f.context)
	if err != nil {
		return nil, err
	}
	probe := *restConfig
	probe.Timeout = reachTimeout
	client, err := kubernetes.NewForConfig(&probe)
	if err != nil {
		return nil, err
	}
	if _, err := client.Discovery().ServerVersion(); err != nil {
		return nil, fmt.Errorf("API server %s: %w", restConfig.Host, err)
	}
	return restConfig, nil
}

// installedNamespace is the namespace of the installed mesh: the flag's
// when given, else the one the injector's webhook calls, else the flag's
// default.
func installedNamespace(ctx context.Context, client kubernetes.Interface, flags *pflag.FlagSet, flagValue string) (string, error) {
	if flags.Changed("namespace") {
		return flagValue, nil
	}
	ns, err := installed.FindNamespace(ctx, client)
	if err != nil || ns == "" {
		return flagValue, err
	}
	return ns, nil
}

// keepInstalledTrust fills cfg with the trust of the mesh installed in the
// cluster, refusing what would break it (see installed.Reuse), and says on
// stderr what it did.
func keepInstalledTrust(ctx context.Context, client kubernetes.Interface, cfg *install.Config, stderr io.Writer) error {
	ns, err := installed.FindNamespace(ctx, client)
	if err != nil {
		return fmt.Errorf("%w (--offline renders without reading the cluster)", err)
	}
	namespace := cfg.Namespace
	if namespace == "" {
		namespace = install.Default().Namespace
	}
	if ns != "" && ns != namespace {
		return fmt.Errorf("skein is installed in namespace %s (the webhook %s calls it), not %s: give --namespace %s, or uninstall it first", ns, install.WebhookConfigurationName, namespace, ns)
	}
	m, err := installed.Read(ctx, client, namespace)
	if err != nil {
		return fmt.Errorf("reading the installed mesh (--offline renders without reading the cluster): %w", err)
	}
	if m == nil {
		noteNewTrust(cfg, stderr, "no skein installed in namespace "+namespace)
		return nil
	}
	note, err := installed.Reuse(cfg, m)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "skein:", note)
	return nil
}

// noteNewTrust says on stderr that the render makes new trust, when it
// does (no issuer given in generate mode).
func noteNewTrust(cfg *install.Config, stderr io.Writer, why string) {
	if cfg.IdentityMode == install.IdentityExternal || len(cfg.Identity.IssuerCertPEM) > 0 {
		return
	}
	fmt.Fprintf(stderr, "skein: %s: generated new trust (a new trust anchor and issuer); keep them with `skein identity generate --out DIR` and --identity-dir to render the same trust again\n", why)
}
