package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skeinmesh/skein/config"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/install/check"
	"github.com/skeinmesh/skein/internal/install/installed"
)

func newCheckCommand() *cobra.Command {
	var pre, proxy bool
	var kubeconfig, kubeContext, namespace, proxyNamespace, output *string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that Skein can be installed (--pre) or is installed and healthy",
		Long: `Runs a line of checks against the cluster: [ok], [warn] or [FAIL], with a hint
under each problem. Exits non-zero when a check fails.

  skein check --pre   before skein install: API server, version, permissions
  skein check         after: namespace, CRDs, trust, webhook, controller up

Both say whether the Gateway API CRDs for HTTPRoute and GRPCRoute are in the
cluster, from which bundle (version, channel), and whether they serve v1: a
warning when they are not, since the mesh runs without routes.
  skein check --proxy after, and the meshed pods: every pod that asks for
                      injection has a proxy, proxies ready, trusting the
                      issuer's anchor, on the injector's image

JSON fields (-o json): a list of {name, status ("ok"|"warn"|"FAIL"), detail, hint}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pre && proxy {
				return errors.New("--pre and --proxy: choose one (there are no proxies before the install)")
			}
			checker, err := newChecker(*kubeconfig, *kubeContext, *namespace)
			if err != nil {
				return err
			}
			if !pre && !cmd.Flags().Changed("namespace") {
				// The installed mesh's namespace, from its webhook; when
				// that cannot be read, the checks say what is missing.
				if ns, err := installed.FindNamespace(cmd.Context(), checker.Client); err == nil && ns != "" {
					checker.Namespace = ns
				}
			}
			var results []check.Result
			if pre {
				results = checker.PreInstall(cmd.Context())
			} else {
				results = checker.PostInstall(cmd.Context())
			}
			if proxy {
				results = append(results, checker.DataPlane(cmd.Context(), *proxyNamespace)...)
			}
			if err := printOutput(cmd.OutOrStdout(), *output, results, func(w io.Writer) { check.Print(w, results) }); err != nil {
				return err
			}
			if check.Failed(results) {
				return errors.New("some checks failed")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&pre, "pre", false, "run the pre-install checks")
	cmd.Flags().BoolVar(&proxy, "proxy", false, "also check the meshed pods (the data plane)")
	proxyNamespace = cmd.Flags().String("proxy-namespace", "", "with --proxy: only the pods of this namespace (default: all)")
	kubeconfig = cmd.Flags().String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	kubeContext = cmd.Flags().String("context", "", "kubeconfig context (default: the current one)")
	namespace = cmd.Flags().String("namespace", install.Default().Namespace, "namespace of the control plane (default: the installed mesh's, found from its webhook; else skein)")
	output = addOutputFlag(cmd)
	return cmd
}

// loadKubeconfig reads the kubeconfig file (default: $KUBECONFIG, then
// ~/.kube/config) with kubeContext (default: the current one).
func loadKubeconfig(kubeconfig, kubeContext string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	restConfig, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	return restConfig, nil
}

func newChecker(kubeconfig, kubeContext, namespace string) (*check.Checker, error) {
	restConfig, err := loadKubeconfig(kubeconfig, kubeContext)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	crds, err := config.CRDs()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded CRDs: %w", err)
	}
	names, err := install.CRDNames(crds)
	if err != nil {
		return nil, err
	}
	gatewayCRDs, err := config.GatewayAPICRDs()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded Gateway API CRDs: %w", err)
	}
	gatewayVersion, err := install.BundleVersion(gatewayCRDs)
	if err != nil {
		return nil, err
	}
	return &check.Checker{Client: client, Dynamic: dyn, Namespace: namespace, CRDs: names, GatewayAPIVersion: gatewayVersion}, nil
}
