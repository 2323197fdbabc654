package destclient

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
	destinationpb "github.com/skeinmesh/skein/proto/destination"
)

// endpointState is one stream's view of a destination, built from a
// snapshot and the deltas after it.
type endpointState struct {
	started bool // a snapshot or does_not_exist has arrived
	exists  bool
	byAddr  map[netip.AddrPort]discovery.Endpoint
	opaque  []uint16
}

// apply applies u and returns the full set it leads to. A delta before any
// snapshot is an error: the stream cannot be trusted from then on.
func (s *endpointState) apply(u *destinationpb.Update, log *slog.Logger) (discovery.EndpointSet, error) {
	switch kind := u.GetKind().(type) {
	case *destinationpb.Update_Snapshot:
		*s = endpointState{
			started: true,
			exists:  true,
			byAddr:  make(map[netip.AddrPort]discovery.Endpoint, len(kind.Snapshot.GetEndpoints())),
			opaque:  toOpaquePorts(kind.Snapshot.GetOpaquePorts(), log),
		}
		s.add(kind.Snapshot.GetEndpoints(), log)
	case *destinationpb.Update_DoesNotExist:
		*s = endpointState{started: true}
	case *destinationpb.Update_Add:
		if !s.exists {
			return discovery.EndpointSet{}, errors.New("destination stream sent add before a snapshot")
		}
		s.add(kind.Add.GetEndpoints(), log)
	case *destinationpb.Update_Remove:
		if !s.exists {
			return discovery.EndpointSet{}, errors.New("destination stream sent remove before a snapshot")
		}
		for _, a := range kind.Remove.GetAddresses() {
			addr, err := netip.ParseAddrPort(a)
			if err != nil {
				log.Warn("destination remove: bad address ignored", "address", a, "err", err)
				continue
			}
			delete(s.byAddr, addr)
		}
	default:
		return discovery.EndpointSet{}, fmt.Errorf("destination stream sent an update of unknown kind %T", kind)
	}
	return s.set(), nil
}

func (s *endpointState) add(eps []*destinationpb.Endpoint, log *slog.Logger) {
	for _, pe := range eps {
		ep, err := toEndpoint(pe, log)
		if err != nil {
			log.Warn("destination endpoint ignored", "err", err)
			continue
		}
		s.byAddr[ep.Addr] = ep
	}
}

// set returns a fresh EndpointSet, endpoints sorted by address.
func (s *endpointState) set() discovery.EndpointSet {
	if !s.exists {
		return discovery.EndpointSet{Exists: false}
	}
	eps := slices.SortedFunc(maps.Values(s.byAddr), func(a, b discovery.Endpoint) int {
		return a.Addr.Compare(b.Addr)
	})
	if eps == nil {
		eps = []discovery.Endpoint{}
	}
	return discovery.EndpointSet{Exists: true, Endpoints: eps, OpaquePorts: s.opaque}
}

func toEndpoint(pe *destinationpb.Endpoint, log *slog.Logger) (discovery.Endpoint, error) {
	addr, err := netip.ParseAddrPort(pe.GetAddress())
	if err != nil {
		return discovery.Endpoint{}, fmt.Errorf("address %q: %w", pe.GetAddress(), err)
	}
	return discovery.Endpoint{
		Addr:     addr,
		Weight:   pe.GetWeight(),
		Labels:   pe.GetLabels(),
		Identity: pe.GetIdentity(),
		Protocol: toProtocol(addr, pe.GetProtocol(), log),
	}, nil
}

// toProtocol reads a hint this proxy does not know (a newer controller's)
// as no hint: detection still works, where dropping the endpoint would not.
func toProtocol(addr netip.AddrPort, p string, log *slog.Logger) discovery.Protocol {
	switch discovery.Protocol(p) {
	case discovery.ProtocolUnknown, discovery.ProtocolHTTP1, discovery.ProtocolHTTP2, discovery.ProtocolOpaque:
		return discovery.Protocol(p)
	}
	log.Debug("destination endpoint: unknown protocol hint ignored", "address", addr, "protocol", p)
	return discovery.ProtocolUnknown
}

func toOpaquePorts(ports []uint32, log *slog.Logger) []uint16 {
	var out []uint16
	for _, p := range ports {
		if p == 0 || p > 65535 {
			log.Warn("destination opaque port out of range ignored", "port", p)
			continue
		}
		out = append(out, uint16(p))
	}
	return out
}

// sameSet reports whether a and b would make the proxy do the same thing,
// so a reconnect that brings back the same state is not passed on.
func sameSet(a, b discovery.EndpointSet) bool {
	return a.Exists == b.Exists &&
		slices.Equal(a.OpaquePorts, b.OpaquePorts) &&
		slices.EqualFunc(a.Endpoints, b.Endpoints, func(x, y discovery.Endpoint) bool {
			return x.Addr == y.Addr && x.Weight == y.Weight && x.Identity == y.Identity &&
				x.Protocol == y.Protocol && maps.Equal(x.Labels, y.Labels)
		})
}
