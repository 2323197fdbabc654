package stack

import (
	"net/netip"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/routes"
)

// ConnInfo is what the proxy knows about one downstream connection.
type ConnInfo struct {
	// Direction is "inbound" or "outbound".
	Direction string
	// OrigDst is where the client meant to connect before redirection.
	OrigDst netip.AddrPort
	// Client is the downstream peer's address.
	Client netip.AddrPort
	// ClientID is the peer's verified identity; empty without mTLS.
	ClientID string
	// Target is the connection's target_addr metric label when it is not
	// OrigDst as such: inbound, metrics.Unknown for a port the application
	// does not listen on (see inbound.ListeningPorts). Empty means OrigDst.
	Target string
	// ToProxy is set when the client connected to the proxy's own port
	// rather than being redirected: only a peer proxy's opaque mesh
	// connection may do that.
	ToProxy bool

	origDstText cachedAddr // see CacheOrigDstString
}

// cachedAddr is an address and its text.
type cachedAddr struct {
	addr netip.AddrPort
	text string
}

// CacheOrigDstString formats OrigDst once for OrigDstString, which the
// layers call per request. Call it once OrigDst is final, before the
// connection's requests are served: it is not safe beside them.
func (ci *ConnInfo) CacheOrigDstString() {
	ci.origDstText = cachedAddr{addr: ci.OrigDst, text: ci.OrigDst.String()}
}

// OrigDstString is OrigDst as text, "" when it is unknown. The text
// CacheOrigDstString kept is used only while OrigDst is still the address
// it was made from (a mirrored request's copy clears OrigDst).
func (ci *ConnInfo) OrigDstString() string {
	if !ci.OrigDst.IsValid() {
		return ""
	}
	if ci.origDstText.addr == ci.OrigDst {
		return ci.origDstText.text
	}
	return ci.OrigDst.String()
}

// RequestInfo is filled in by layers while they handle a request, so that
// outer layers (metrics, tap) can label the request with where it went.
type RequestInfo struct {
	Endpoint discovery.Endpoint
	// Service names the logical destination, when discovery knew it.
	Service  string
	ServerID string
	// Upgraded is set when the upstream switched protocols (WebSocket) or
	// accepted a CONNECT tunnel.
	Upgraded bool
	// Route is the route_name label: "namespace/name" of the HTTPRoute or
	// GRPCRoute whose rule the route layer chose; empty for none.
	Route string
	// Backend is the authority of the backend the route layer chose from a
	// rule's weighted backends; the resolve layer resolves it instead of
	// the request's authority. Empty: the request's own destination.
	Backend string
	// Policy and Rule are the destination's outbound policy and the rule
	// the route layer chose (&Policy.Defaults when no route matched the
	// destination's traffic); nil when the destination has no policy.
	// Layers below (timeout, retry, mirror, balance) read them.
	Policy *routes.Policy
	Rule   *routes.Rule
}
