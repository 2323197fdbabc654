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
			conf := pr.config(peerPort, tb.target, "/tmp/peer")
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

// TestSelectingAPeerScenarioInstallsItsProgram checks that selecting a
// scenario that runs a peer installs that peer's program, once.
func TestSelectingAPeerScenarioInstallsItsProgram(t *testing.T) {
	for _, s := range Scenarios {
		if s.Peer == "" {
			continue
		}
		peers := Config{Scenarios: []string{"direct", s.Name}}.selectedPeers()
		if len(peers) != 1 || peers[0] != s.Peer {
			t.Errorf("selecting %s installs %v, want [%s]", s.Name, peers, s.Peer)
		}
	}
}

// TestOnRequestScenariosRunOnlyWhenNamed keeps the default run the one the
// published figures compare with.
func TestOnRequestScenariosRunOnlyWhenNamed(t *testing.T) {
	for _, s := range (Config{}).selectedScenarios() {
		if s.OnRequest {
			t.Errorf("the default run includes %s, which runs only on request", s.Name)
		}
	}
	got := Config{Scenarios: []string{"direct", "haproxy-pair"}}.selectedScenarios()
	if len(got) != 2 || got[1].Name != "haproxy-pair" {
		t.Errorf("-scenarios direct,haproxy-pair selects %v", got)
	}
}
