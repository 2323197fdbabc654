package tap

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// Layer is the tap of one direction ("inbound" or "outbound"). Put it just
// inside the metrics layer, outside the errors layer, so that it sees what
// the client saw, the proxy's own answers included.
//
// A request is matched in two steps: at its arrival on what the client
// sent (direction, method, path, authority, and inbound the peer), then,
// once the layers below have answered, on where it went (the route, and
// outbound the peer discovery chose). Its request event is sent then, with
// its arrival time, just before its response event: only then are its
// route and destination known.
func (t *Tap) Layer(direction string) stack.Layer {
	return func(next stack.Handler) stack.Handler {
		return &layer{tap: t, next: next, direction: direction}
	}
}

type layer struct {
	tap       *Tap
	next      stack.Handler
	direction string
}

func (l *layer) Serve(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	sessions := l.tap.sessions.Load()
	if sessions == nil {
		return l.next.Serve(ctx, req)
	}
	return l.serveTapped(ctx, req, *sessions)
}

// serveTapped follows req for the sessions whose filter it may match and
// which have room for its events; for those without room it only counts
// what they would have got.
func (l *layer) serveTapped(ctx context.Context, req *stack.Request, sessions []*session) (*stack.Response, error) {
	var followed []*session
	var starvedBuf [MaxSessions]*session // on the stack: a session at its cap costs no allocation
	starved := starvedBuf[:0]
	for _, s := range sessions {
		if !s.filter.matchArrival(l.direction, req) {
			continue
		}
		if s.limit.room() {
			followed = append(followed, s)
		} else {
			starved = append(starved, s)
		}
	}
	if len(followed) == 0 {
		resp, err := l.next.Serve(ctx, req)
		countStarved(starved, l.direction, req, err)
		return resp, err
	}
	x := l.tap.newExchange(l.direction, req, followed)
	resp, err := l.next.Serve(ctx, req)
	countStarved(starved, l.direction, req, err)
	return x.answered(req, resp, err)
}

// countStarved counts, for each session that had no room when req
// arrived and whose filter it matches, the events it did not get.
func countStarved(starved []*session, direction string, req *stack.Request, err error) {
	events := uint64(3) // request, response, end
	if err != nil {
		events = 2
	}
	for _, s := range starved {
		if s.filter.matchRouted(direction, req) {
			s.dropped.Add(events)
		}
	}
}

// matchArrival reports whether req may match: every field decided by what
// the client sent matches.
func (f *filter) matchArrival(direction string, req *stack.Request) bool {
	if f.direction != "" && f.direction != direction {
		return false
	}
	if f.method != "" && !strings.EqualFold(f.method, req.Method) {
		return false
	}
	if f.pathPrefix != "" && !strings.HasPrefix(pathOnly(req.Path), f.pathPrefix) {
		return false
	}
	if f.authority != "" && !strings.EqualFold(f.authority, withoutDefaultPort(req.Authority, req.Scheme)) {
		return false
	}
	if direction == "inbound" {
		return f.matchPeer(req.Conn.Client.Addr(), req.Conn.ClientID)
	}
	return true
}

// matchRouted reports whether req, matched at arrival, matches where the
// layers below sent it.
func (f *filter) matchRouted(direction string, req *stack.Request) bool {
	if f.route != "" && f.route != req.Info.Route {
		return false
	}
	if direction == "outbound" {
		return f.matchPeer(outboundPeer(req).Addr(), req.Info.ServerID)
	}
	return true
}

func (f *filter) matchPeer(addr netip.Addr, id string) bool {
	if f.peerIdentity != "" && f.peerIdentity != id {
		return false
	}
	return len(f.peers) == 0 || slices.Contains(f.peers, addr.Unmap())
}

// outboundPeer is where an outbound request went: the endpoint balancing
// chose, else the address the client dialled.
func outboundPeer(req *stack.Request) netip.AddrPort {
	if ep := req.Info.Endpoint.Addr; ep.IsValid() {
		return ep
	}
	return req.Conn.OrigDst
}

// pathOnly is path without its query.
func pathOnly(path string) string {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		return path[:i]
	}
	return path
}

// withoutDefaultPort drops :80 from an http authority and :443 from an
// https one, as a filter names them.
func withoutDefaultPort(authority, scheme string) string {
	switch {
	case scheme == "https" && strings.HasSuffix(authority, ":443"):
		return strings.TrimSuffix(authority, ":443")
	case scheme != "https" && strings.HasSuffix(authority, ":80"):
		return strings.TrimSuffix(authority, ":80")
	}
	return authority
}

// since is the time from start to now, never negative.
func since(now func() time.Time, start time.Time) time.Duration {
	return max(now().Sub(start), 0)
}
