package install

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/apimachinery/pkg/util/validation"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
)

// Names of the objects Skein installs. `skein check` and the controller
// look for them by these names.
const (
	ControllerName         = "skein-controller" // Deployment, Service, ServiceAccount, RBAC
	IssuerSecretName       = "skein-identity-issuer"
	JoinTokenKeySecretName = "skein-join-token-key" // the signing key, for `skein identity token`; mounted nowhere
	// JoinTokenPublicKeyConfigMapName holds the join-token key's public
	// half, all the controller mounts to verify join tokens.
	JoinTokenPublicKeyConfigMapName = "skein-join-token-public-key"
	WebhookSecretName               = "skein-webhook-tls"
	TrustAnchorsConfigMapName       = "skein-trust-anchors"
	WebhookConfigurationName        = "skein-proxy-injector"
	WebhookName                     = "inject.skein.io" // the one webhook inside the configuration
	WebhookPath                     = "/inject"
	// ProxyImageEnv is the controller container's variable that names the
	// image injected proxies run.
	ProxyImageEnv = "SKEIN_CONTROLLER_PROXY_IMAGE"
)

// ControllerAddr is the controller's gRPC address inside the cluster for an
// installation in namespace: what injected proxies dial.
func ControllerAddr(namespace string) string {
	return fmt.Sprintf("%s.%s.svc.cluster.local:%d", ControllerName, namespace, GRPCPort)
}

// Ports of the controller.
const (
	GRPCPort           = 8086
	AdminPort          = 9996
	WebhookPort        = 8443 // the container's
	WebhookServicePort = 443  // the Service's, what the API server calls
)

// ControllerSelector selects the controller's pods.
var ControllerSelector = map[string]string{"app.kubernetes.io/name": ControllerName}

// AdminProxyPort is how the API server's service proxy names the admin port
// (…/services/skein-controller:9996/proxy/ready).
var AdminProxyPort = strconv.Itoa(AdminPort)

// GrafanaDashboardsConfigMapName is the ConfigMap that carries Skein's
// Grafana dashboards when asked for (`skein install --grafana-dashboards`).
const GrafanaDashboardsConfigMapName = "skein-grafana-dashboards"

// GrafanaDashboardLabel is the label Grafana's dashboard sidecar (the
// Grafana Helm chart, kube-prometheus-stack) looks for on ConfigMaps.
const GrafanaDashboardLabel = "grafana_dashboard"

// APIPort is where the controller serves its metrics API, tap and
// dashboard when given a Prometheus: on its pod's loopback only (the API
// has no authentication of its own), reached through a port-forward
// (skein dashboard --kubernetes).
const APIPort = 8085

// IdentityMode says where the identity issuer comes from.
type IdentityMode string

const (
	// IdentityGenerate renders the issuer Secret from material made at
	// render time (or given in Config.Identity).
	IdentityGenerate IdentityMode = "generate"
	// IdentityExternal renders no issuer Secret: something else
	// (cert-manager, a vault, a person) keeps skein-identity-issuer
	// (tls.crt, tls.key, ca.crt) in the namespace. The trust anchor must
	// still be given, for the trust-anchors ConfigMap.
	IdentityExternal IdentityMode = "external"
)

// Config is what to install. Zero fields take the defaults of Default.
type Config struct {
	Namespace       string
	ControllerImage string
	ProxyImage      string // passed to the injector as SKEIN_CONTROLLER_PROXY_IMAGE
	ImagePullPolicy string // Always, IfNotPresent or Never
	TrustDomain     string
	Replicas        int32 // controller replicas; it is stateless, several may run
	LogLevel        string
	// DefaultInboundPolicy is the controller's -default-inbound-policy:
	// the authorization policy of ports no Server selects, unless a pod or
	// namespace annotation says otherwise.
	DefaultInboundPolicy string
	// PrometheusURL is the Prometheus that scrapes the proxies. When set,
	// the controller serves its metrics API (and tap and the dashboard) on
	// 127.0.0.1:APIPort in its pod; when empty, it serves none.
	PrometheusURL string

	IdentityMode IdentityMode
	// Identity is the mesh's trust material. Empty fields are generated at
	// render time: everything in generate mode, the join-token key in
	// external mode (where TrustAnchorPEM is required and the issuer must be
	// empty). Give it to keep the same trust across renders.
	Identity IdentityMaterial
	// Webhook is the injector's serving certificate and its CA; generated
	// at render time when empty.
	Webhook WebhookTLS

	// GatewayAPICRDs renders the Gateway API's HTTPRoute and GRPCRoute CRDs
	// (`skein install --gateway-api-crds`; the chart's
	// gatewayAPI.installCRDs): they belong to the cluster, not to Skein
	// (other meshes and gateways ship the same CRDs), so they are not
	// labelled as Skein's and `skein uninstall` never deletes them.
	GatewayAPICRDs bool
	// GrafanaDashboards renders Skein's Grafana dashboards (`skein install
	// --grafana-dashboards`; the chart's grafana.dashboards) as the
	// ConfigMap skein-grafana-dashboards labelled grafana_dashboard: "1",
	// which Grafana's dashboard sidecar loads.
	GrafanaDashboards bool
}

// Default returns the usual installation.
func Default() Config {
	return Config{
		Namespace:       "skein",
		ControllerImage: "ghcr.io/skeinmesh/skein-controller:dev",
		ProxyImage:      "ghcr.io/skeinmesh/skein-proxy:dev",
		ImagePullPolicy: "IfNotPresent",
		TrustDomain:     "cluster.local",
		Replicas:        1,
		LogLevel:        "info",
		IdentityMode:    IdentityGenerate,

		DefaultInboundPolicy: "all-unauthenticated",
	}
}

// withDefaults fills the zero fields from Default.
func (c Config) withDefaults() Config {
	d := Default()
	for _, f := range []struct {
		field *string
		def   string
	}{
		{&c.Namespace, d.Namespace}, {&c.ControllerImage, d.ControllerImage}, {&c.ProxyImage, d.ProxyImage},
		{&c.ImagePullPolicy, d.ImagePullPolicy}, {&c.TrustDomain, d.TrustDomain}, {&c.LogLevel, d.LogLevel},
		{&c.DefaultInboundPolicy, d.DefaultInboundPolicy},
	} {
		if *f.field == "" {
			*f.field = f.def
		}
	}
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
	if c.IdentityMode == "" {
		c.IdentityMode = d.IdentityMode
	}
	return c
}

// Validate reports every field that is wrong, by the name of its
// `skein install` flag.
func (c Config) Validate() error {
	var errs []error
	if msgs := validation.IsDNS1123Label(c.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace: %q: %v", c.Namespace, msgs))
	}
	if c.ControllerImage == "" {
		errs = append(errs, errors.New("controller-image: required"))
	}
	if c.ProxyImage == "" {
		errs = append(errs, errors.New("proxy-image: required"))
	}
	switch c.ImagePullPolicy {
	case "Always", "IfNotPresent", "Never":
	default:
		errs = append(errs, fmt.Errorf("image-pull-policy: %q is not Always, IfNotPresent or Never", c.ImagePullPolicy))
	}
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
		errs = append(errs, fmt.Errorf("trust-domain: %q: %w", c.TrustDomain, err))
	}
	if err := policyv1.ValidateDefaultPolicy("default-inbound-policy", c.DefaultInboundPolicy); err != nil {
		errs = append(errs, err)
	}
	if c.Replicas < 1 {
		errs = append(errs, fmt.Errorf("replicas: %d, want at least 1", c.Replicas))
	}
	if c.PrometheusURL != "" {
		if u, err := url.Parse(c.PrometheusURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("prometheus-url: %q is not an http(s):// URL", c.PrometheusURL))
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level: %q is not debug, info, warn or error", c.LogLevel))
	}
	switch c.IdentityMode {
	case IdentityGenerate:
	case IdentityExternal:
		if len(c.Identity.TrustAnchorPEM) == 0 {
			errs = append(errs, errors.New("trust-anchor: required with --identity external (the anchor the external issuer chains to)"))
		}
		if len(c.Identity.IssuerCertPEM) > 0 || len(c.Identity.IssuerKeyPEM) > 0 {
			errs = append(errs, errors.New("identity-dir: an external issuer is kept by someone else; give only its trust anchor (--trust-anchor)"))
		}
	default:
		errs = append(errs, fmt.Errorf("identity: %q is not %q or %q", c.IdentityMode, IdentityGenerate, IdentityExternal))
	}
	return errors.Join(errs...)
}
