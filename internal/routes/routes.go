// Package routes is the outbound policy of one destination as the proxy
// applies it: ordered routes whose rules match requests, change them, split
// them over weighted backends, mirror them, and say how long to wait, when
// to retry, when to eject an endpoint and what faults to inject. The
// controller compiles it from Gateway API HTTPRoutes and GRPCRoutes and
// Service annotations; proto/policy carries it; the proxy's layers read it.
// It has no dependencies beyond the standard library, so both sides share
// it.
package routes

import (
	"context"
	"errors"
	"regexp"
	"time"
)

// ErrNotAnswered is what a Lookup returns (wrapped) when the controller
// has not answered for a destination in time: the route layer then goes on
// as without a policy (no routes, the defaults), and the resolve layer
// fails closed if discovery has not answered either. Routes shape traffic;
// authorization is the inbound proxy's, which fails closed on its own.
var ErrNotAnswered = errors.New("the controller has not sent the destination's policy yet")

// Lookup is what the proxy's route layer needs from the policy client.
type Lookup interface {
	// Policy returns the current policy of dst (the key the resolve layer
	// uses: an authority "name.ns.svc.cluster.local:port" or "ip:port"),
	// waiting up to ctx for the controller's first answer. A nil Policy
	// with a nil error means dst has none: no routes, the defaults.
	Policy(ctx context.Context, dst string) (*Policy, error)
}

// Policy is the outbound policy of one destination (a Service port).
type Policy struct {
	// Service is "namespace/name" of the Service; Port its port.
	Service string
	Port    uint16
	// Routes are in Gateway API precedence order: the first rule of the
	// first route with a matching Match wins (see Select). No routes
	// means one implicit rule sending everything to the destination.
	Routes []Route
	// Defaults come from the Service's annotations and apply to every
	// rule that does not set its own.
	Defaults Rule
	// Budget bounds the retries of every route of the destination.
	Budget Budget
}

// Route is one HTTPRoute or GRPCRoute attached to the destination.
type Route struct {
	// Kind is "HTTPRoute" or "GRPCRoute"; Namespace/Name name the object.
	Kind      string
	Namespace string
	Name      string
	Rules     []Rule
}

// Rule is one rule of a route. Zero fields mean "not set here": the
// Service's Defaults apply, then the proxy's own defaults.
type Rule struct {
	// Matches: any one matching selects the rule; none matches everything.
	Matches []Match

	// Filters, applied in this order: fault, redirect (answers at once),
	// request header modifier, URL rewrite; response header modifier on the
	// way back.
	RequestHeaders  *HeaderModifier
	ResponseHeaders *HeaderModifier
	Redirect        *Redirect
	Rewrite         *Rewrite
	Mirrors         []Mirror

	// Backends share the traffic by Weight. Empty means the destination
	// itself; all weights 0 is rejected by the controller.
	Backends []Backend

	Timeouts Timeouts
	Retry    *Retry
	Breaker  *Breaker
	Fault    *Fault
}

// Match is one HTTPRouteMatch / GRPCRouteMatch, all of whose parts must
// hold. A GRPCRoute's service/method match is compiled into Path (exact
// "/pkg.Service/Method", or a regex) with Method "POST".
type Match struct {
	Path        *PathMatch
	Method      string // empty: any
	Headers     []ValueMatch
	QueryParams []ValueMatch
}

// PathMatchType says how PathMatch.Value is compared.
type PathMatchType string

const (
	PathExact  PathMatchType = "Exact"
	PathPrefix PathMatchType = "PathPrefix" // by whole segments, as the Gateway API says
	PathRegex  PathMatchType = "RegularExpression"
)

type PathMatch struct {
	Type  PathMatchType
	Value string
	// Regex is compiled once by whoever builds the Policy (Compile).
	Regex *regexp.Regexp
}

// ValueMatch matches a header (Name compared case-insensitively) or a query
// parameter (Name exact) by exact value or by regular expression.
type ValueMatch struct {
	Name  string
	Value string
	Regex *regexp.Regexp // set for a RegularExpression match
}

// HeaderModifier is the Gateway API's HTTPHeaderFilter: names are
// case-insensitive; Set replaces, Add appends, Remove deletes.
type HeaderModifier struct {
	Set    []Header
	Add    []Header
	Remove []string
}

type Header struct{ Name, Value string }

// Redirect answers the request itself with a redirect (Gateway API
// HTTPRequestRedirectFilter). Empty fields keep the request's own.
type Redirect struct {
	Scheme     string
	Hostname   string
	Port       uint16
	Path       *PathRewrite
	StatusCode int // 301 or 302 (default 302)
}

// Rewrite changes the request on its way to the backend
// (HTTPURLRewriteFilter).
type Rewrite struct {
	Hostname string
	Path     *PathRewrite
}

// PathRewrite is ReplaceFullPath (Full) or ReplacePrefixMatch (Prefix,
// which replaces the part the rule's PathPrefix match matched).
type PathRewrite struct {
	Full   string
	Prefix string
	// IsPrefix tells a ReplacePrefixMatch of "" from no rewrite.
	IsPrefix bool
}

// Backend is one weighted backendRef, resolved to the authority the proxy
// asks discovery for.
type Backend struct {
	// Authority is "name.namespace.svc.cluster.local:port".
	Authority string
	// Service is "namespace/name".
	Service string
	Port    uint16
	// Weight: 0 gets nothing; the controller turns a missing weight into 1.
	Weight uint32
}

// Mirror is a RequestMirror filter: a copy of Percent (0-100, fractions
// allowed) of the rule's requests goes to Backend.
type Mirror struct {
	Backend Backend
	Percent float64
	// CompareHeaders are the response header fields (lower case) compared
	// with the primary's besides the status: skein.io/mirror-compare-headers
	// of the route, else of the Service, which the controller copies into
	// every Mirror. Nil means the default, content-type and grpc-status; a
	// field missing from the headers is looked up in the trailers.
	CompareHeaders []string
}

// Timeouts of a rule; 0 means none.
type Timeouts struct {
	// Request bounds the whole request as the client sees it, retries
	// included (Gateway API timeouts.request).
	Request time.Duration
	// BackendRequest bounds each attempt (timeouts.backendRequest; also
	// the retry's per-try timeout when that is not set).
	BackendRequest time.Duration
	// ResponseHeader bounds the wait for the response's headers.
	ResponseHeader time.Duration
	// Idle closes a request whose body moves neither way for this long.
	Idle time.Duration
}

// Retry says which failed attempts to try again.
type Retry struct {
	// Limit is the most retries (attempts after the first).
	Limit int
	// HTTP lists HTTP conditions: "5xx", "gateway-error" (502, 503, 504),
	// "reset" (connection failed or reset), or status ranges ("500-504",
	// "429").
	HTTP []StatusRange
	// GatewayError and Reset are the named conditions above.
	GatewayError bool
	Reset        bool
	// GRPC lists gRPC status codes (read from headers and trailers).
	GRPC []int
	// PerTry bounds each attempt; 0 uses Timeouts.BackendRequest.
	PerTry time.Duration
	// Backoff is the base and cap of the exponential back-off between
	// attempts, with full jitter.
	BackoffBase, BackoffMax time.Duration
	// NonIdempotent allows retrying POST, PATCH and others; by default only
	// GET, HEAD, OPTIONS, TRACE, PUT and DELETE are retried, and gRPC calls
	// only for the GRPC codes listed.
	NonIdempotent bool
}

// StatusRange is an inclusive HTTP status range.
type StatusRange struct{ Min, Max int }

// Budget bounds retries per destination: at most Ratio of the requests of
// the last TTL plus MinPerSecond retries per second.
type Budget struct {
	Ratio        float64       // default 0.2
	MinPerSecond int           // default 10
	TTL          time.Duration // default 10s
}

// Breaker ejects endpoints that fail. Set on a rule it applies to the
// rule's requests only: a route failing on an endpoint does not eject it
// for other routes.
type Breaker struct {
	// Consecutive ejects after this many failures in a row (0: off).
	Consecutive int
	// SuccessRate ejects an endpoint whose success rate over Window, with
	// at least MinRequests requests, falls below it (0: off).
	SuccessRate float64
	Window      time.Duration
	MinRequests int
	// MinPenalty and MaxPenalty bound the ejection (doubling per failed
	// probe); Jitter adds up to that share of it at random.
	MinPenalty, MaxPenalty time.Duration
	Jitter                 float64
	// Failure says what counts as a failure: HTTP status ranges (5xx and
	// 429 by default) and gRPC codes.
	FailureHTTP []StatusRange
	FailureGRPC []int
	// MaxEjectedPercent caps the share of endpoints ejected at once
	// (default 50).
	MaxEjectedPercent int
}

// Fault injects failures: AbortPercent of requests answered at once with
// AbortHTTP (or the gRPC status AbortGRPC, for a gRPC request), and
// DelayPercent delayed by Delay first. A percentage of 0 injects nothing.
type Fault struct {
	AbortPercent float64
	AbortHTTP    int
	AbortGRPC    int
	DelayPercent float64
	Delay        time.Duration
}

// RouteName is the route_name metric label of a rule: "namespace/name"
// of its route, or "" for the implicit default route.
func (r *Route) RouteName() string {
	if r == nil {
		return ""
	}
	return r.Namespace + "/" + r.Name
}
