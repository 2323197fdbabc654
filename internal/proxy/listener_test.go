package proxy

import (
	"net/netip"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

func TestRequireMTLSRefusesOnlyPlaintextFromTheNetworkOnItsPorts(t *testing.T) {
	network := netip.MustParseAddrPort("198.18.0.4:40000")
	loopback := netip.MustParseAddrPort("127.0.0.1:40000")
	cases := []struct {
		name    string
		require RequireMTLS
		client  netip.AddrPort
		port    uint16
		refuse  bool
	}{
		{"not required", RequireMTLS{}, network, 8080, false},
		{"proxy-wide", RequireMTLS{All: true}, network, 8080, true},
		{"listed port", RequireMTLS{Ports: []uint16{8080, 9090}}, network, 9090, true},
		{"port not listed", RequireMTLS{Ports: []uint16{8080}}, network, 9090, false},
		{"the workload's own loopback", RequireMTLS{All: true}, loopback, 8080, false},
		{"IPv6 loopback", RequireMTLS{All: true}, netip.MustParseAddrPort("[::1]:40000"), 8080, false},
		{"no client address", RequireMTLS{All: true}, netip.AddrPort{}, 8080, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := &listener{requireMTLS: c.require}
			ci := &stack.ConnInfo{Client: c.client, OrigDst: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.5"), c.port)}
			if got := l.mustRefusePlaintext(ci); got != c.refuse {
				t.Errorf("mustRefusePlaintext = %v, want %v", got, c.refuse)
			}
		})
	}
}
