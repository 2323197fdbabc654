package proxy

import (
	"strings"
	"testing"
	"time"
)

func TestValidateNamesTheFieldAtFault(t *testing.T) {
	pem := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	cases := []struct {
		name   string
		change func(*Config)
		want   string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"controller with a trust anchor file", func(c *Config) {
			c.ControllerAddr, c.TrustAnchorsFile, c.Identity, c.TokenFile = "ctl:8086", "/ca.crt", "spiffe://cluster.local/ns/a/sa/b", "/t"
		}, ""},
		{"controller with inline anchors", func(c *Config) {
			c.ControllerAddr, c.TrustAnchorsPEM, c.Identity, c.TokenFile = "ctl:8086", pem, "spiffe://cluster.local/ns/a/sa/b", "/t"
		}, ""},
		{"controller without an identity", func(c *Config) { c.ControllerAddr, c.TrustAnchorsPEM = "ctl:8086", pem }, "identity: required with controller-addr"},
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
		{"require-mtls with an identity", func(c *Config) {
			c.ControllerAddr, c.TrustAnchorsPEM, c.TokenFile, c.Identity = "ctl:8086", pem, "/t", "spiffe://cluster.local/ns/a/sa/b"
			c.RequireMTLS = RequireMTLS{All: true}
		}, ""},
		{"require-mtls without an identity", func(c *Config) { c.RequireMTLS = RequireMTLS{All: true} }, "require-mtls / require-mtls-ports: need identity"},
		{"require-mtls-ports without an identity", func(c *Config) { c.RequireMTLS = RequireMTLS{Ports: []uint16{8080}} }, "need identity"},
		{"require-mtls-ports with port 0", func(c *Config) { c.RequireMTLS = RequireMTLS{Ports: []uint16{0}} }, "require-mtls-ports: port 0"},
		{"the control plane's controller ID", func(c *Config) { c.ControllerID = "spiffe://cluster.local/skein/controller" }, ""},
		{"a workload's ID as the controller's", func(c *Config) {
			c.ControllerID = "spiffe://cluster.local/ns/skein/sa/skein-controller"
		}, "controller-id: spiffe://cluster.local/ns/skein/sa/skein-controller is a workload's identity"},
		{"bad mode", func(c *Config) { c.Mode = "nat" }, "mode"},
		{"bad address", func(c *Config) { c.InboundAddr = "4143" }, "inbound-addr"},
		{"no drain delay", func(c *Config) { c.DrainDelay = 0 }, ""},
		{"negative drain delay", func(c *Config) { c.DrainDelay = -time.Second }, "drain-delay"},
		{"no opaque idle timeout", func(c *Config) { c.OpaqueIdleTimeout = 0 }, "opaque-idle-timeout"},
		{"no tunnel idle timeout", func(c *Config) { c.TunnelIdleTimeout = 0 }, "tunnel-idle-timeout"},
		{"no connections", func(c *Config) { c.MaxConnections = 0 }, "max-connections: must be at least 1"},
		{"no connections per source", func(c *Config) { c.MaxConnectionsPerSource = 0 }, "max-connections-per-source: must be at least 1"},
		{"per-source cap above the listener's", func(c *Config) { c.MaxConnections, c.MaxConnectionsPerSource = 100, 101 }, "max-connections-per-source: 101 is more than max-connections 100"},
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
