package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/install/installed"
)

func newUpgradeCommand() *cobra.Command {
	var f installFlags
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Print the manifests that upgrade the installed Skein, keeping its configuration and trust",
		Long: `Reads the installed mesh from the cluster (the configuration skein install
recorded in the ConfigMap skein-config, and the trust in its Secrets) and
prints its manifests again with this skein's images and any flag given
changed:

  skein upgrade --controller-log-level debug | kubectl apply -f -

Images that were the installing skein's defaults move to this skein's; images
given by flag at install are kept unless given again. The trust anchor, issuer
and join-token key are kept, so running proxies keep working; proxies run
their old image until their workloads restart (skein check --proxy names them
and says how). What changes is said on stderr.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUpgrade(cmd, &f)
		},
	}
	f.register(cmd.Flags(), true)
	_ = cmd.Flags().MarkHidden("offline")
	return cmd
}

func runUpgrade(cmd *cobra.Command, f *installFlags) error {
	if f.offline {
		return errors.New("--offline: skein upgrade reads the installed mesh from the cluster; skein install --offline renders without it")
	}
	ctx, flags, stderr := cmd.Context(), cmd.Flags(), cmd.ErrOrStderr()
	client, err := f.cluster.reach()
	if err != nil {
		return fmt.Errorf("skein upgrade reads the installed mesh from the cluster: %w", err)
	}
	namespace, err := installedNamespace(ctx, client, flags, f.cfg.Namespace)
	if err != nil {
		return err
	}
	m, err := installed.Read(ctx, client, namespace)
	if err != nil {
		return fmt.Errorf("reading the installed mesh: %w", err)
	}
	if m == nil {
		return fmt.Errorf("no skein installed in namespace %s: install it with skein install", namespace)
	}
	if m.Recorded == nil {
		return fmt.Errorf("the mesh in namespace %s recorded no configuration (ConfigMap %s; installed by an older skein): run skein install with the flags it was installed with, which keeps its trust", namespace, install.ConfigConfigMapName)
	}
	before := *m.Recorded
	if !flags.Changed("grafana-dashboards") {
		f.grafana = before.GrafanaDashboards
	}
	if !flags.Changed("gateway-api-crds") {
		f.gatewayAPI = before.GatewayAPICRDs
	}
	given, err := f.config()
	if err != nil {
		return err
	}
	cfg := overlay(before.Config(), given, flags.Changed)
	if _, err := installed.Reuse(&cfg, m); err != nil {
		return err
	}
	out, err := install.Render(cfg)
	if err != nil {
		return err
	}
	sayChanges(stderr, before, install.Record(cfg), m)
	_, err = cmd.OutOrStdout().Write(out)
	return err
}

// overlay returns the recorded configuration with the settings given by
// flags that changed, and everything else given (trust material, embedded
// documents).
func overlay(recorded, given install.Config, changed func(string) bool) install.Config {
	cfg := given
	for _, f := range []struct {
		flag     string
		dst      *string
		recorded string
	}{
		{"namespace", &cfg.Namespace, recorded.Namespace},
		{"controller-image", &cfg.ControllerImage, recorded.ControllerImage},
		{"proxy-image", &cfg.ProxyImage, recorded.ProxyImage},
		{"image-pull-policy", &cfg.ImagePullPolicy, recorded.ImagePullPolicy},
		{"trust-domain", &cfg.TrustDomain, recorded.TrustDomain},
		{"controller-log-level", &cfg.LogLevel, recorded.LogLevel},
		{"prometheus-url", &cfg.PrometheusURL, recorded.PrometheusURL},
		{"default-inbound-policy", &cfg.DefaultInboundPolicy, recorded.DefaultInboundPolicy},
	} {
		if !changed(f.flag) {
			*f.dst = f.recorded
		}
	}
	if !changed("replicas") {
		cfg.Replicas = recorded.Replicas
	}
	if !changed("identity") {
		cfg.IdentityMode = recorded.IdentityMode
	}
	return cfg
}

// sayChanges writes the settings that differ between the installed and
// the upgraded configuration, and the trust kept.
func sayChanges(w io.Writer, before, after install.Recorded, m *installed.Mesh) {
	fields := func(r install.Recorded) map[string]any {
		data, _ := json.Marshal(r)
		var out map[string]any
		_ = json.Unmarshal(data, &out)
		delete(out, "defaultControllerImage")
		delete(out, "defaultProxyImage")
		return out
	}
	b, a := fields(before), fields(after)
	var changes []string
	for k, v := range a {
		if fmt.Sprint(b[k]) != fmt.Sprint(v) {
			changes = append(changes, fmt.Sprintf("%s: %v -> %v", k, b[k], v))
		}
	}
	slices.Sort(changes)
	if len(changes) == 0 {
		changes = []string{"no setting changes"}
	}
	fmt.Fprintf(w, "skein: upgrading the mesh in namespace %s: %s; trust anchor %s kept\n", m.Namespace, strings.Join(changes, ", "), installed.Fingerprints(m.Identity.TrustAnchorPEM))
}
