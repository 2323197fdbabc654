package install

import (
	"encoding/json"
	"fmt"
)

// Where an installation records the configuration it was rendered with,
// so that `skein upgrade`, `skein inject` and `skein check` read it back
// (package install/installed) instead of asking for the flags again.
const (
	ConfigConfigMapName = "skein-config"
	ConfigKey           = "config.json"
)

// Recorded is the configuration an installation records: every setting of
// Config but the trust material (which lives in its own Secrets) and the
// embedded documents (recorded as whether they were rendered).
type Recorded struct {
	Namespace            string       `json:"namespace"`
	ControllerImage      string       `json:"controllerImage"`
	ProxyImage           string       `json:"proxyImage"`
	ImagePullPolicy      string       `json:"imagePullPolicy"`
	TrustDomain          string       `json:"trustDomain"`
	Replicas             int32        `json:"replicas"`
	LogLevel             string       `json:"logLevel"`
	DefaultInboundPolicy string       `json:"defaultInboundPolicy"`
	PrometheusURL        string       `json:"prometheusURL,omitempty"`
	IdentityMode         IdentityMode `json:"identityMode"`
	GatewayAPICRDs       bool         `json:"gatewayAPICRDs,omitempty"`
	GrafanaDashboards    bool         `json:"grafanaDashboards,omitempty"`
	// DefaultControllerImage and DefaultProxyImage are the images the
	// rendering skein installs by default: an upgrade moves images that
	// were these defaults to its own, and keeps images chosen by flag.
	DefaultControllerImage string `json:"defaultControllerImage"`
	DefaultProxyImage      string `json:"defaultProxyImage"`
}

// Record returns what cfg records in the cluster.
func Record(cfg Config) Recorded {
	cfg = cfg.withDefaults()
	d := Default()
	return Recorded{
		Namespace: cfg.Namespace, ControllerImage: cfg.ControllerImage, ProxyImage: cfg.ProxyImage,
		ImagePullPolicy: cfg.ImagePullPolicy, TrustDomain: cfg.TrustDomain, Replicas: cfg.Replicas,
		LogLevel: cfg.LogLevel, DefaultInboundPolicy: cfg.DefaultInboundPolicy, PrometheusURL: cfg.PrometheusURL,
		IdentityMode: cfg.IdentityMode, GatewayAPICRDs: cfg.GatewayAPICRDs, GrafanaDashboards: cfg.GrafanaDashboards,
		DefaultControllerImage: d.ControllerImage, DefaultProxyImage: d.ProxyImage,
	}
}

// Config returns the configuration r records, without trust material or
// embedded documents, with images that were the recording skein's defaults
// replaced by this one's (an upgrade's new version).
func (r Recorded) Config() Config {
	d := Default()
	cfg := Config{
		Namespace: r.Namespace, ControllerImage: r.ControllerImage, ProxyImage: r.ProxyImage,
		ImagePullPolicy: r.ImagePullPolicy, TrustDomain: r.TrustDomain, Replicas: r.Replicas,
		LogLevel: r.LogLevel, DefaultInboundPolicy: r.DefaultInboundPolicy, PrometheusURL: r.PrometheusURL,
		IdentityMode: r.IdentityMode,
	}
	if r.ControllerImage == r.DefaultControllerImage {
		cfg.ControllerImage = d.ControllerImage
	}
	if r.ProxyImage == r.DefaultProxyImage {
		cfg.ProxyImage = d.ProxyImage
	}
	return cfg.withDefaults()
}

// ParseRecorded reads the recorded configuration from its ConfigMap's data.
func ParseRecorded(data map[string]string) (Recorded, error) {
	var r Recorded
	text, ok := data[ConfigKey]
	if !ok {
		return r, fmt.Errorf("ConfigMap %s has no key %s", ConfigConfigMapName, ConfigKey)
	}
	if err := json.Unmarshal([]byte(text), &r); err != nil {
		return r, fmt.Errorf("ConfigMap %s: %w", ConfigConfigMapName, err)
	}
	return r, nil
}
