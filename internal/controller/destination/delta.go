package destination

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc"

	"github.com/skeinmesh/skein/internal/model"
	destinationpb "github.com/skeinmesh/skein/proto/destination"
)

// sentState is what one stream has told its client so far: the last set
// it sent, which the model shares with every other watcher (no copy).
type sentState struct {
	started bool
	set     model.EndpointSet
}

// deltaKey names the change between two sets the model handed out. Every
// stream watching the same destination moves through the same versions, so
// the change is computed once and its messages sent by all of them.
type deltaKey struct {
	path     string
	started  bool
	from, to uint64
}

// deltaCache keeps the updates of recent changes. Messages in it are shared
// by streams and never modified (marshalling only reads them).
type deltaCache struct {
	mu      sync.Mutex
	entries map[deltaKey]*delta
}

// delta is the messages of one change, and their encoding, made once by
// the first stream that sends them and then written as they are by every
// other: a 5,000-endpoint snapshot is marshalled once, not once per proxy.
type delta struct {
	updates []*destinationpb.Update

	once    sync.Once
	encoded []*grpc.PreparedMsg // nil when encoding failed: send updates
}

// prepared returns the encoded messages, encoding them with stream's codec
// on the first call. The encoding is uncompressed: the controller registers
// no compressor, so no stream can ask for one (cmd/skein-controller's
// TestControllerRegistersNoCompressor), and the bytes suit every stream.
func (d *delta) prepared(stream grpc.ServerStream) []*grpc.PreparedMsg {
	d.once.Do(func() {
		encoded := make([]*grpc.PreparedMsg, len(d.updates))
		for i, u := range d.updates {
			encoded[i] = new(grpc.PreparedMsg)
			if err := encoded[i].Encode(stream, u); err != nil {
				return // Send marshals, and reports the error
			}
		}
		d.encoded = encoded
	})
	return d.encoded
}

// maxDeltas bounds the cache; it is cleared when full: the changes that
// matter are the latest few per destination.
const maxDeltas = 4096

// change returns the change that takes a stream from what it sent to next,
// shared with every stream making the same change.
func (c *deltaCache) change(path string, sent *sentState, next model.EndpointSet) *delta {
	key := deltaKey{path: path, started: sent.started, from: sent.set.Version, to: next.Version}
	cacheable := next.Version != 0 && (!sent.started || sent.set.Version != 0)
	c.mu.Lock()
	d, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || !cacheable {
		d = &delta{updates: between(sent.started, sent.set, next)}
		if cacheable {
			c.mu.Lock()
			if c.entries == nil || len(c.entries) >= maxDeltas {
				c.entries = make(map[deltaKey]*delta)
			}
			if shared, ok := c.entries[key]; ok {
				d = shared // another stream made it meanwhile
			} else {
				c.entries[key] = d
			}
			c.mu.Unlock()
		}
	}
	sent.started, sent.set = true, next
	return d
}

// between returns the updates that take a client from prev (nothing, when
// not started) to next; none when nothing the client sees changed. Adds
// come before removes so that a client never sees a set emptier than both.
func between(started bool, prev, next model.EndpointSet) []*destinationpb.Update {
	if !next.Exists {
		if started && !prev.Exists {
			return nil
		}
		return []*destinationpb.Update{doesNotExist()}
	}
	if !started || !prev.Exists || prev.Service != next.Service || !slices.Equal(prev.OpaquePorts, next.OpaquePorts) {
		return []*destinationpb.Update{snapshotOf(next)}
	}
	var added []*destinationpb.Endpoint
	var removed []string
	var size int // endpoints in next
	if sortedByAddr(prev.Endpoints) && sortedByAddr(next.Endpoints) {
		added, removed, size = diffSorted(prev.Endpoints, next.Endpoints)
	} else {
		added, removed, size = diffUnsorted(prev.Endpoints, next.Endpoints)
	}
	// A delta touching as many endpoints as the new set holds is no
	// cheaper than the set itself, and one message is simpler to apply.
	if len(added)+len(removed) >= size && len(added)+len(removed) > 0 {
		return []*destinationpb.Update{snapshotOf(next)}
	}
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

func snapshotOf(set model.EndpointSet) *destinationpb.Update {
	return &destinationpb.Update{Kind: &destinationpb.Update_Snapshot{Snapshot: toProtoSet(set)}}
}

func doesNotExist() *destinationpb.Update {
	return &destinationpb.Update{Kind: &destinationpb.Update_DoesNotExist{DoesNotExist: &destinationpb.DoesNotExist{}}}
}

// sortedByAddr reports whether eps are in strictly increasing address order
// (no duplicates), as the model hands out service sets.
func sortedByAddr(eps []model.Endpoint) bool {
	for i := 1; i < len(eps); i++ {
		if eps[i-1].Addr.Compare(eps[i].Addr) >= 0 {
			return false
		}
	}
	return true
}

// diffSorted walks two sorted sets side by side: what is new or changed in
// next, what is gone from prev, and how many endpoints next holds. Endpoints
// without a valid address are dropped, as in diffUnsorted.
func diffSorted(prev, next []model.Endpoint) (added []*destinationpb.Endpoint, removed []string, size int) {
	i, j := 0, 0
	for i < len(prev) || j < len(next) {
		switch {
		case j == len(next) || i < len(prev) && prev[i].Addr.Compare(next[j].Addr) < 0:
			if prev[i].Addr.IsValid() {
				removed = append(removed, prev[i].Addr.String())
			}
			i++
		case i == len(prev) || prev[i].Addr.Compare(next[j].Addr) > 0:
			if next[j].Addr.IsValid() {
				added = append(added, toProtoEndpoint(next[j]))
				size++
			}
			j++
		default:
			if next[j].Addr.IsValid() {
				if !sameEndpoint(prev[i], next[j]) {
					added = append(added, toProtoEndpoint(next[j]))
				}
				size++
			}
			i++
			j++
		}
	}
	return added, removed, size
}

// diffUnsorted is diffSorted for sets in any order, through maps.
func diffUnsorted(prev, next []model.Endpoint) (added []*destinationpb.Endpoint, removed []string, size int) {
	before, after := indexByAddr(prev), indexByAddr(next)
	for addr, ep := range after {
		if old, ok := before[addr]; !ok || !sameEndpoint(old, ep) {
			added = append(added, toProtoEndpoint(ep))
		}
	}
	for addr := range before {
		if _, ok := after[addr]; !ok {
			removed = append(removed, addr.String())
		}
	}
	return added, removed, len(after)
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
