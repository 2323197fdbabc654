// Package authz is the inbound policy of one workload port as the proxy
// enforces it: the Server that owns the port (if any), who it authorizes
// (for the whole Server and per route), the default policy that applies to
// everything not authorized, and its local rate limits. The controller
// compiles it from policy.skein.io resources, Gateway API routes whose
// parent is a Server, and default-policy annotations; proto/policy
// carries it; the proxy's authorization and rate-limit layers and the
// controller's `skein authz explain` evaluate it with the same Decide. It
// depends only on the standard library and internal/routes, so both sides
// share it.
package authz

import (
	"context"
	"net/netip"

	"github.com/skeinmesh/skein/internal/routes"
)

// Lookup is what the proxy's inbound layers need from the policy client.
type Lookup interface {
	// Inbound returns the current policy of the workload's port, waiting
	// for the controller's first answer no longer than a bound of its own
	// (callers set no timer) nor past ctx. A proxy that cannot get one
	// fails closed: its layers answer as DefaultDeny would.
	Inbound(ctx context.Context, port uint16) (*Inbound, error)
	// Watch calls changed (from one goroutine) whenever any port's policy
	// changes, so that connections a tightened policy no longer allows can
	// be closed. It returns when ctx ends.
	Watch(ctx context.Context, changed func())
}

// DefaultPolicy says what happens to traffic no authorization allows.
type DefaultPolicy string

const (
	AllUnauthenticated     DefaultPolicy = "all-unauthenticated"     // anyone (the mesh's default)
	AllAuthenticated       DefaultPolicy = "all-authenticated"       // any meshed client (mTLS)
	ClusterUnauthenticated DefaultPolicy = "cluster-unauthenticated" // any client in the cluster networks
	ClusterAuthenticated   DefaultPolicy = "cluster-authenticated"   // meshed clients in the cluster networks
	Deny                   DefaultPolicy = "deny"                    // nobody
	Audit                  DefaultPolicy = "audit"                   // anyone, but what would be denied is logged and counted
)

// Inbound is the policy of one port of a workload.
type Inbound struct {
	Port uint16
	// Server is "namespace/name" of the Server that owns the port; empty
	// when none does and Default alone decides.
	Server string
	// Protocol is the Server's proxyProtocol hint ("", "HTTP/1", "HTTP/2",
	// "gRPC", "opaque").
	Protocol string
	// Default applies to what no authorization allows: without a Server,
	// the workload's default policy (pod annotation, namespace annotation,
	// install); with one, the Server's accessPolicy (deny unless set).
	Default DefaultPolicy
	// Authorizations allow clients on every request to the Server.
	Authorizations []Authorization
	// Routes are the HTTPRoutes/GRPCRoutes whose parent is the Server, in
	// precedence order: a request matching a route's rule is authorized by
	// that route's Authorizations (and the Server's); once a Server has
	// routes, an HTTP request matching none of them is answered 404, as
	// Linkerd does.
	Routes []Route
	// ClusterNetworks are the cluster-* default policies' networks.
	ClusterNetworks []netip.Prefix
	// RateLimit is the Server's local rate limit; nil for none.
	RateLimit *RateLimit
	// Probes lists the paths of the workload's kubelet probes on this port:
	// unauthenticated GETs to them from the node stay allowed by default
	// (see docs/security.md for how to tighten that).
	ProbePaths []string
}

// Route is an inbound route: the matches of its rules and who may use it.
type Route struct {
	// Name is "namespace/name" of the HTTPRoute/GRPCRoute (route_name).
	Name           string
	Matches        []routes.Match // none: every request
	Authorizations []Authorization
}

// Authorization is one AuthorizationPolicy as it applies to a target: all
// of its required authentications must match the client.
type Authorization struct {
	// Name is "namespace/name" of the AuthorizationPolicy (authz_name).
	Name string
	// Networks, when not empty, is a NetworkAuthentication: the client's
	// address must be in one of them.
	Networks []Network
	// MeshTLS, when set, is a MeshTLSAuthentication: the client must be
	// meshed (mTLS) with an identity it lists.
	MeshTLS *MeshTLS
}

// Network is a CIDR with exceptions.
type Network struct {
	Prefix netip.Prefix
	Except []netip.Prefix
}

// MeshTLS lists the identities a MeshTLSAuthentication accepts: exact
// SPIFFE IDs, "*" for any meshed client, "*.suffix" for any identity
// ending in ".suffix" — service accounts and namespaces are compiled to
// their SPIFFE IDs ("spiffe://td/ns/NS/sa/SA", or a namespace as the
// prefix "spiffe://td/ns/NS/sa/").
type MeshTLS struct {
	Identities []string
	// Prefixes are namespace-wide identity prefixes.
	Prefixes []string
}

// RateLimit is a Server's local rate limit, in requests per second.
type RateLimit struct {
	// Total bounds all requests to the Server; 0: none.
	Total float64
	// PerIdentity bounds each client identity (unmeshed clients share one
	// bucket); 0: none.
	PerIdentity float64
	// Overrides give listed identities a limit of their own.
	Overrides []RateLimitOverride
}

type RateLimitOverride struct {
	RequestsPerSecond float64
	Identities        []string
}

// Client is who is calling, as the inbound proxy knows it.
type Client struct {
	Addr netip.Addr
	// Identity is the verified SPIFFE ID of a meshed client; empty
	// without mTLS.
	Identity string
}

// Request is what per-route authorization looks at; nil for opaque TCP.
type Request struct {
	Method string
	Path   string
	// Header is looked up by lower-case name.
	Header func(name string) (string, bool)
}

// Decision explains one authorization decision.
type Decision struct {
	Allowed bool
	// Audit is set when the request is allowed only because the policy in
	// force is Audit: it would have been denied.
	Audit bool
	// Server, Route and Authorization name what decided ("" for none);
	// Default is the default policy when no Authorization did.
	Server        string
	Route         string
	Authorization string
	Default       DefaultPolicy
	// NoRoute is set (with Allowed false) when the Server has routes and
	// none matches the HTTP request: the proxy answers 404 (gRPC
	// UNIMPLEMENTED), as for an outbound request with no route, not 403.
	NoRoute bool
	// Probe is set when the request is allowed only as a kubelet probe
	// (ProbePaths).
	Probe bool

	// What Reason explains from: the policy (nil when none was known),
	// the client, the request's method and path (query dropped), and what
	// the Default lacked.
	in           *Inbound
	client       Client
	method, path string
	why          string
}
