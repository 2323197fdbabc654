package destination

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/skeinmesh/skein/internal/model"
	destinationpb "github.com/skeinmesh/skein/proto/destination"
)

// sentState is what one stream has told its client so far, so that the
// next set can be sent as a delta.
type sentState struct {
	// started is false until the first update is sent.
	started bool
	exists  bool
	service string
	opaque  []uint16
	byAddr  map[netip.AddrPort]model.Endpoint
}

// advance returns the updates that take the client from the sent state to
// set (none when nothing the client sees changed) and records set as sent.
// Adds come before removes so that a client never sees a set emptier than
// both the old and the new one.
func (s *sentState) advance(set model.EndpointSet) []*destinationpb.Update {
	if !set.Exists {
		if s.started && !s.exists {
			return nil
		}
		*s = sentState{started: true}
		return []*destinationpb.Update{doesNotExist()}
	}

	next := indexByAddr(set.Endpoints)
	if !s.started || !s.exists || s.service != set.Service || !slices.Equal(s.opaque, set.OpaquePorts) {
		return []*destinationpb.Update{s.snapshot(set, next)}
	}

	var added []*destinationpb.Endpoint
	for addr, ep := range next {
		if old, ok := s.byAddr[addr]; !ok || !sameEndpoint(old, ep) {
			added = append(added, toProtoEndpoint(ep))
		}
	}
	var removed []string
	for addr := range s.byAddr {
		if _, ok := next[addr]; !ok {
			removed = append(removed, addr.String())
		}
	}
	// A delta touching as many endpoints as the new set holds is no
	// cheaper than the set itself, and one message is simpler to apply.
	if len(added)+len(removed) >= len(next) && len(added)+len(removed) > 0 {
		return []*destinationpb.Update{s.snapshot(set, next)}
	}
	s.byAddr = next

	var updates []*destinationpb.Update
	if len(added) > 0 {
		slices.SortFunc(added, func(a, b *destinationpb.Endpoint) int { return strings.Compare(a.Address, b.Address) })
		updates = append(updates, &destinationpb.Update{Kind: &destinationpb.Update_Add{
			Add: &destinationpb.Endpoints{Endpoints: added},
		}})
	}
	if len(removed) > 0 {
		slices.Sort(removed)
		updates = append(updates, &destinationpb.Update{Kind: &destinationpb.Update_Remove{
			Remove: &destinationpb.Addresses{Addresses: removed},
		}})
	}
	return updates
}

func (s *sentState) snapshot(set model.EndpointSet, byAddr map[netip.AddrPort]model.Endpoint) *destinationpb.Update {
	*s = sentState{
		started: true,
		exists:  true,
		service: set.Service,
		opaque:  set.OpaquePorts,
		byAddr:  byAddr,
	}
	return &destinationpb.Update{Kind: &destinationpb.Update_Snapshot{Snapshot: toProtoSet(set)}}
}

func doesNotExist() *destinationpb.Update {
	return &destinationpb.Update{Kind: &destinationpb.Update_DoesNotExist{DoesNotExist: &destinationpb.DoesNotExist{}}}
}

// indexByAddr keys endpoints by address; for a duplicate the last one wins,
// as it does on the client. Endpoints without a valid address are dropped.
func indexByAddr(eps []model.Endpoint) map[netip.AddrPort]model.Endpoint {
	m := make(map[netip.AddrPort]model.Endpoint, len(eps))
	for _, ep := range eps {
		if ep.Addr.IsValid() {
			m[ep.Addr] = ep
		}
	}
	return m
}

func sameEndpoint(a, b model.Endpoint) bool {
	return a.Addr == b.Addr && a.Weight == b.Weight && a.Identity == b.Identity &&
		a.Protocol == b.Protocol && maps.Equal(a.Labels, b.Labels)
}

func toProtoSet(set model.EndpointSet) *destinationpb.EndpointSet {
	out := &destinationpb.EndpointSet{
		Service:   set.Service,
		Endpoints: make([]*destinationpb.Endpoint, 0, len(set.Endpoints)),
	}
	for _, ep := range set.Endpoints {
		if ep.Addr.IsValid() {
			out.Endpoints = append(out.Endpoints, toProtoEndpoint(ep))
		}
	}
	for _, p := range set.OpaquePorts {
		out.OpaquePorts = append(out.OpaquePorts, uint32(p))
	}
	return out
}

// toProtoEndpoint shares ep.Labels with the message: marshalling only reads it.
func toProtoEndpoint(ep model.Endpoint) *destinationpb.Endpoint {
	return &destinationpb.Endpoint{
		Address:  ep.Addr.String(),
		Weight:   ep.Weight,
		Labels:   ep.Labels,
		Identity: ep.Identity,
		Protocol: ep.Protocol,
	}
}
