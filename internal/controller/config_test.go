package controller

import (
	"strings"
	"testing"
)

func TestValidateNamesTheLimitAtFault(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Config)
		want   string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"metrics API on loopback", func(c *Config) { c.APIAddr, c.PrometheusURL = "127.0.0.1:8085", "http://p:9090" }, ""},
		{"metrics API on every address", func(c *Config) { c.APIAddr, c.PrometheusURL = "0.0.0.0:8085", "http://p:9090" },
			`api-addr: "0.0.0.0:8085" is not a loopback address`},
		{"metrics API on a name", func(c *Config) { c.APIAddr, c.PrometheusURL = "controller:8085", "http://p:9090" },
			`api-addr: "controller:8085" is not a loopback address`},
		{"no streams per connection", func(c *Config) { c.MaxStreamsPerConnection = 0 }, "max-streams-per-connection"},
		{"no destination streams per peer", func(c *Config) { c.MaxDestinationStreamsPerPeer = 0 }, "max-destination-streams-per-peer"},
		{"no Kubernetes QPS", func(c *Config) { c.KubeAPIQPS = 0 }, "kube-api-qps"},
		{"no Certify burst", func(c *Config) { c.CertifyBurst = 0 }, "certify-rate / certify-burst"},
		{"no join-token lifetime", func(c *Config) { c.JoinTokenMaxLifetime = 0 }, "join-token-max-lifetime"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			cfg.ManifestsDir, cfg.IdentityDir, cfg.JoinTokenKey = "/m", "/i", "/k"
			c.change(&cfg)
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
		})
	}
}

// The injector must be told where its proxies find the controller: there
// is no default namespace to fall back on.
func TestWebhookNeedsTheProxiesControllerAddress(t *testing.T) {
	cfg := Default()
	cfg.Kubernetes = true
	cfg.IdentitySecret = "other-ns/skein-identity-issuer"
	cfg.WebhookAddr, cfg.WebhookCertDir = "0.0.0.0:8443", "/var/run/skein/webhook"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "proxy-controller-addr: \"\" is not host:port (required with webhook-addr") {
		t.Fatalf("Validate without proxy-controller-addr: %v", err)
	}
	cfg.ProxyControllerAddr = "skein-controller.other-ns.svc.cluster.local:8086"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}
