package bench

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/skeinmesh/skein/internal/netns"
)

// TestPeerConfigsForwardEveryProtocolToTheVIP checks the one-hop shape of
// every peer: it listens on its own loopback port for each protocol and
// sends that protocol to the service VIP.
func TestPeerConfigsForwardEveryProtocolToTheVIP(t *testing.T) {
	tb := &testbed{vip: netip.MustParseAddr("198.19.0.1"), server: &netns.Host{Name: "server"}}
	for name, pr := range map[string]peer{"haproxy": haproxy, "nginx": nginx, "caddy": caddy} {
		t.Run(name, func(t *testing.T) {
			conf := pr.config(tb, "/tmp/peer")
			for _, p := range Protocols {
				for _, want := range []string{peerPort(p).String(), tb.target(p).String()} {
					if !strings.Contains(conf, want) {
						t.Errorf("%s config has no %s for %s:\n%s", name, want, p.Name, conf)
					}
				}
			}
			if _, ok := peerPackages[pr.program]; !ok {
				t.Errorf("%s: no Debian package known for %s", name, pr.program)
			}
		})
	}
}
