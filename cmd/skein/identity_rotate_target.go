package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/install/check"
)

// rotateTarget is where a rotation step edits the issuer and how it asks
// what the proxies trust and hold: an issuer directory and the controller's
// --api, or a Kubernetes install's Secret and every controller replica.
type rotateTarget struct {
	dir        string
	kubernetes bool
	cluster    clusterFlags
	namespace  string
	api        string
	force      bool

	store  identity.IssuerStore // set by open
	client kubernetes.Interface // with --kubernetes
}

func (t *rotateTarget) addFlags(cmd *cobra.Command, checksProxies bool) {
	f := cmd.Flags()
	f.StringVar(&t.dir, "dir", "", "the controller's issuer directory (this or --kubernetes)")
	f.BoolVar(&t.kubernetes, "kubernetes", false, "rotate the issuer Secret of the mesh installed in the cluster (this or --dir)")
	f.StringVar(&t.namespace, "namespace", install.Default().Namespace, "with --kubernetes: the namespace Skein is installed in (default: the one its webhook calls)")
	t.cluster.register(f)
	if checksProxies {
		f.StringVar(&t.api, "api", defaultMetricsAPI, "with --dir: the controller's API, to check what the proxies trust and hold")
		f.BoolVar(&t.force, "force", false, "skip the check of the proxies (a proxy that is not ready for the step fails requests)")
	}
}

// open sets the store the flags name.
func (t *rotateTarget) open(cmd *cobra.Command) error {
	switch {
	case t.dir != "" && t.kubernetes:
		return errors.New("give --dir or --kubernetes, not both")
	case t.dir != "":
		t.store = identity.DirStore(t.dir)
		return nil
	case !t.kubernetes:
		return errors.New("give --dir (the controller's issuer directory) or --kubernetes (the mesh installed in the cluster)")
	}
	client, err := t.cluster.reach()
	if err != nil {
		return err
	}
	ns, err := installedNamespace(cmd.Context(), client, cmd.Flags(), t.namespace)
	if err != nil {
		return err
	}
	t.client, t.namespace = client, ns
	t.store = &identity.SecretStore{Client: client, Namespace: ns, Name: install.IssuerSecretName, ConfigMap: install.TrustAnchorsConfigMapName}
	return nil
}

// summary is what the proxies report: from the controller's API, or added
// up over every controller pod's /metrics (each counts the proxies whose
// trust-bundle stream it holds), read through the API server's pod proxy.
func (t *rotateTarget) summary(ctx context.Context) (identity.TrustSummary, error) {
	if !t.kubernetes {
		var out identity.TrustSummary
		client, err := newMetricsClient(t.api)
		if err != nil {
			return out, err
		}
		if err := client.get(ctx, "/api/v1/trust", nil, &out); err != nil {
			return out, fmt.Errorf("asking the controller what its proxies trust (--force to go on without): %w", err)
		}
		return out, nil
	}
	sum, err := check.ControllerTrust(ctx, t.client, t.namespace)
	if err != nil {
		return sum, fmt.Errorf("%w (--force to go on without)", err)
	}
	return sum, nil
}

// require fails unless every proxy that reported counts for the anchor
// with fingerprint fp in count, and none is unreported.
func (t *rotateTarget) require(cmd *cobra.Command, fp, what, wait string, count func(identity.AnchorSummary) int) error {
	if t.force {
		return nil
	}
	sum, err := t.summary(cmd.Context())
	if err != nil {
		return err
	}
	n := 0
	for _, a := range sum.Anchors {
		if a.Fingerprint == fp {
			n = count(a)
		}
	}
	if n != sum.Proxies || sum.Unreported > 0 {
		return fmt.Errorf("%d of %d proxies %s %s (%d not reported yet): %s, then run this again (--force to go on anyway)",
			n, sum.Proxies, what, fp[:16], sum.Unreported, wait)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "checked: all %d proxies %s %s\n", sum.Proxies, what, fp[:16])
	return nil
}
