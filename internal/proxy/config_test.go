package proxy

import (
	"strings"
	"testing"
)

func TestValidateNamesTheFieldAtFault(t *testing.T) {
	pem := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	cases := []struct {
		name   string
		change func(*Config)
		want   string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"controller with a trust anchor file", func(c *Config) { c.ControllerAddr = "ctl:8086"; c.TrustAnchorsFile = "/ca.crt" }, ""},
		{"controller with inline anchors", func(c *Config) { c.ControllerAddr = "ctl:8086"; c.TrustAnchorsPEM = pem }, ""},
		{"controller without anchors", func(c *Config) { c.ControllerAddr = "ctl:8086" }, "trust-anchors"},
		{"both kinds of anchors", func(c *Config) {
			c.ControllerAddr, c.TrustAnchorsFile, c.TrustAnchorsPEM = "ctl:8086", "/ca.crt", pem
		}, "exactly one"},
		{"identity without a token", func(c *Config) {
			c.ControllerAddr, c.TrustAnchorsPEM, c.Identity = "ctl:8086", pem, "spiffe://cluster.local/ns/a/sa/b"
		}, "token-file"},
		{"identity that is not a SPIFFE ID", func(c *Config) {
			c.ControllerAddr, c.TrustAnchorsPEM, c.TokenFile, c.Identity = "ctl:8086", pem, "/t", "web"
		}, "identity"},
		{"discovery file and controller", func(c *Config) {
			c.ControllerAddr, c.TrustAnchorsPEM, c.DiscoveryFile = "ctl:8086", pem, "/d.yaml"
		}, "discovery-file"},
		{"the control plane's controller ID", func(c *Config) { c.ControllerID = "spiffe://cluster.local/skein/controller" }, ""},
		{"a workload's ID as the controller's", func(c *Config) {
			c.ControllerID = "spiffe://cluster.local/ns/skein/sa/skein-controller"
		}, "controller-id: spiffe://cluster.local/ns/skein/sa/skein-controller is a workload's identity"},
		{"bad mode", func(c *Config) { c.Mode = "nat" }, "mode"},
		{"bad address", func(c *Config) { c.InboundAddr = "4143" }, "inbound-addr"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			c.change(&cfg)
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("valid config refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("got %v, want an error naming %q", err, c.want)
			}
		})
	}
}

// The controller is expected under /skein/ in the proxy's own trust domain,
// never as the workload ns/skein/sa/skein-controller that whoever creates
// namespace skein could be certified as.
func TestControllerIDDefaultsToTheControlPlaneID(t *testing.T) {
	for _, c := range []struct{ identity, want string }{
		{"", "spiffe://cluster.local/skein/controller"},
		{"spiffe://example.org/ns/shop/sa/web", "spiffe://example.org/skein/controller"},
	} {
		cfg := Default()
		cfg.Identity = c.identity
		if got := cfg.controllerID().String(); got != c.want {
			t.Errorf("identity %q: controller ID %s, want %s", c.identity, got, c.want)
		}
	}
}
