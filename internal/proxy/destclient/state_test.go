package destclient

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
	destinationpb "github.com/skeinmesh/skein/proto/destination"
)

func TestEndpointStateApply(t *testing.T) {
	snapshot := func(opaque []uint32, eps ...*destinationpb.Endpoint) *destinationpb.Update {
		return &destinationpb.Update{Kind: &destinationpb.Update_Snapshot{Snapshot: &destinationpb.EndpointSet{Endpoints: eps, OpaquePorts: opaque}}}
	}
	add := func(eps ...*destinationpb.Endpoint) *destinationpb.Update {
		return &destinationpb.Update{Kind: &destinationpb.Update_Add{Add: &destinationpb.Endpoints{Endpoints: eps}}}
	}
	remove := func(addrs ...string) *destinationpb.Update {
		return &destinationpb.Update{Kind: &destinationpb.Update_Remove{Remove: &destinationpb.Addresses{Addresses: addrs}}}
	}
	dne := &destinationpb.Update{Kind: &destinationpb.Update_DoesNotExist{DoesNotExist: &destinationpb.DoesNotExist{}}}
	pe := func(addr, protocol string) *destinationpb.Endpoint {
		return &destinationpb.Endpoint{Address: addr, Weight: 2, Identity: "id", Protocol: protocol, Labels: map[string]string{"pod": "p"}}
	}
	de := func(addr string, protocol discovery.Protocol) discovery.Endpoint {
		return discovery.Endpoint{Addr: netip.MustParseAddrPort(addr), Weight: 2, Identity: "id", Protocol: protocol, Labels: map[string]string{"pod": "p"}}
	}
	set := func(opaque []uint16, eps ...discovery.Endpoint) discovery.EndpointSet {
		if eps == nil {
			eps = []discovery.Endpoint{}
		}
		return discovery.EndpointSet{Exists: true, Endpoints: eps, OpaquePorts: opaque}
	}

	tests := []struct {
		name    string
		updates []*destinationpb.Update
		want    discovery.EndpointSet
		wantErr bool
	}{
		{"snapshot sorted by address", []*destinationpb.Update{snapshot([]uint32{3306}, pe("10.0.0.2:80", "h2"), pe("10.0.0.1:80", "http1"))},
			set([]uint16{3306}, de("10.0.0.1:80", discovery.ProtocolHTTP1), de("10.0.0.2:80", discovery.ProtocolHTTP2)), false},
		{"bad address skipped", []*destinationpb.Update{snapshot(nil, pe("10.0.0.1", "h2"), pe("10.0.0.2:80", "opaque"))},
			set(nil, de("10.0.0.2:80", discovery.ProtocolOpaque)), false},
		{"unknown protocol read as none", []*destinationpb.Update{snapshot(nil, pe("10.0.0.1:80", "quic"))},
			set(nil, de("10.0.0.1:80", discovery.ProtocolUnknown)), false},
		{"opaque port out of range skipped", []*destinationpb.Update{snapshot([]uint32{0, 70000, 25})},
			set([]uint16{25}), false},
		{"add replaces by address", []*destinationpb.Update{snapshot(nil, pe("10.0.0.1:80", "")), add(pe("10.0.0.1:80", "h2"), pe("[fd00::1]:80", ""))},
			set(nil, de("10.0.0.1:80", discovery.ProtocolHTTP2), de("[fd00::1]:80", "")), false},
		{"remove", []*destinationpb.Update{snapshot(nil, pe("10.0.0.1:80", ""), pe("10.0.0.2:80", "")), remove("10.0.0.1:80", "bogus")},
			set(nil, de("10.0.0.2:80", "")), false},
		{"snapshot replaces everything", []*destinationpb.Update{snapshot([]uint32{25}, pe("10.0.0.1:80", "")), snapshot(nil, pe("10.0.0.2:80", ""))},
			set(nil, de("10.0.0.2:80", "")), false},
		{"does not exist", []*destinationpb.Update{snapshot(nil, pe("10.0.0.1:80", "")), dne},
			discovery.EndpointSet{Exists: false}, false},
		{"add before snapshot", []*destinationpb.Update{add(pe("10.0.0.1:80", ""))}, discovery.EndpointSet{}, true},
		{"remove after does not exist", []*destinationpb.Update{dne, remove("10.0.0.1:80")}, discovery.EndpointSet{}, true},
		{"empty update", []*destinationpb.Update{{}}, discovery.EndpointSet{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s endpointState
			var got discovery.EndpointSet
			var err error
			for _, u := range tt.updates {
				if got, err = s.apply(u, slog.New(slog.DiscardHandler)); err != nil {
					break
				}
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && !sameSet(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
