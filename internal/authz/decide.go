package authz

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Decide says whether client c may make request r on the port, and why.
// r is nil for a connection that is not HTTP (opaque TCP, TLS
// passthrough): then only the Server's own Authorizations count.
//
// In order:
//  1. A nil Inbound (the proxy knows no policy for the port yet) denies,
//     as Deny would: fail closed.
//  2. For an HTTP request to a Server with Routes, the first route with a
//     matching Match (routes.Match semantics, in the order given) is the
//     request's route; its Authorizations, then the Server's, may allow
//     it. A request no route matches is denied with NoRoute set (404),
//     unless it is a probe (4.).
//  3. Otherwise the Server's Authorizations may allow it. An
//     Authorization allows when all of its required authentications hold
//     (one with none holds for every client).
//  4. A GET or HEAD to one of ProbePaths (query ignored) is allowed for
//     any client, unless a route of the Server matches it: a route for a
//     probe path is how a user takes the probe under their own policy
//     (docs/security.md).
//  5. Otherwise the Default decides; an empty or unknown Default denies.
//     Audit allows with Audit set: the Decision says what would have
//     denied the request.
func (in *Inbound) Decide(c Client, r *Request) Decision {
	c.Addr = c.Addr.Unmap()
	if in == nil {
		return Decision{Default: Deny}
	}
	d := Decision{Server: in.Server, in: in, client: c}
	if r != nil {
		d.method = r.Method
		d.path, _, _ = strings.Cut(r.Path, "?")
	}
	var route *Route
	if r != nil && len(in.Routes) > 0 {
		route = in.matchRoute(r)
		if route == nil {
			if in.isProbe(r) {
				return in.probeDecision(d)
			}
			d.NoRoute = true
			return d
		}
		d.Route = route.Name
		if a := firstMatch(route.Authorizations, c); a != nil {
			return in.allowedBy(d, a, c)
		}
	}
	if a := firstMatch(in.Authorizations, c); a != nil {
		return in.allowedBy(d, a, c)
	}
	if route == nil && r != nil && in.isProbe(r) {
		return in.probeDecision(d)
	}
	return in.decideByDefault(d, c)
}

// MayCall reports whether c is allowed anything at all on the port: a
// connection, or an HTTP request to some route (probes aside). The proxy
// asks it when a policy changes: a connection whose client may call
// nothing any more is closed. A nil Inbound allows nothing.
func (in *Inbound) MayCall(c Client) bool {
	if in == nil {
		return false
	}
	if in.Decide(c, nil).Allowed {
		return true
	}
	c.Addr = c.Addr.Unmap()
	for i := range in.Routes {
		if firstMatch(in.Routes[i].Authorizations, c) != nil {
			return true
		}
	}
	return false
}

// matchRoute returns the request's route, or nil when none matches.
func (in *Inbound) matchRoute(r *Request) *Route {
	h := headerLookup(r.Header)
	for i := range in.Routes {
		route := &in.Routes[i]
		if len(route.Matches) == 0 {
			return route
		}
		for j := range route.Matches {
			if route.Matches[j].Matches(r.Method, r.Path, h) {
				return route
			}
		}
	}
	return nil
}

// headerLookup adapts Request.Header to routes.Headers.
type headerLookup func(name string) (string, bool)

func (f headerLookup) Lookup(name string) (string, bool) {
	if f == nil {
		return "", false
	}
	return f(name)
}

// isProbe reports whether r is a GET or HEAD to one of the kubelet probe
// paths of the port.
func (in *Inbound) isProbe(r *Request) bool {
	if r.Method != "GET" && r.Method != "HEAD" {
		return false
	}
	path, _, _ := strings.Cut(r.Path, "?")
	return slices.Contains(in.ProbePaths, path)
}

func (in *Inbound) probeDecision(d Decision) Decision {
	d.Allowed, d.Probe = true, true
	return d
}

func (in *Inbound) allowedBy(d Decision, a *Authorization, c Client) Decision {
	d.Allowed = true
	d.Authorization = a.Name
	return d
}

// decideByDefault applies the Default to what no authorization allowed.
func (in *Inbound) decideByDefault(d Decision, c Client) Decision {
	d.Default = in.Default
	allowed, why := in.defaultAllows(in.Default, c)
	switch {
	case in.Default == Audit:
		d.Allowed, d.Audit = true, true
	case allowed:
		d.Allowed = true
	default:
		d.why = why
	}
	return d
}

// Reason is a sentence for logs, `skein authz explain` and meshed
// clients' skein-proxy-error (never shown to unmeshed clients). It is put
// together when asked: most decisions, the allowed requests, are never
// explained, and formatting one for each cost the proxy several
// allocations per request.
func (d Decision) Reason() string {
	in := d.in
	switch {
	case in == nil:
		return "no inbound policy is known for this port yet; denied (fail closed)"
	case d.NoRoute:
		return fmt.Sprintf("%s has routes and none matches %s %s", in.subject(), d.method, d.path)
	case d.Probe:
		return fmt.Sprintf("%s: %s %s is allowed as a kubelet probe path (no route of the Server matches it)", in.subject(), d.method, d.path)
	case d.Authorization != "":
		on := ""
		if d.Route != "" {
			on = " on route " + d.Route
		}
		return fmt.Sprintf("%s: %s is allowed%s by AuthorizationPolicy %s", in.subject(), describe(d.client), on, d.Authorization)
	}
	nothing := "no authorization matched"
	if in.Server == "" {
		nothing = "no Server owns the port"
	}
	switch {
	case d.Audit:
		return fmt.Sprintf("%s: %s for %s; allowed only because the policy is audit (it would be denied)", in.subject(), nothing, describe(d.client))
	case d.Allowed:
		return fmt.Sprintf("%s: %s; default policy %s allows %s", in.subject(), nothing, d.Default, describe(d.client))
	}
	return fmt.Sprintf("%s: %s for %s; default policy %s denies it%s", in.subject(), nothing, describe(d.client), policyName(d.Default), d.why)
}

// defaultAllows evaluates a default policy; why completes a denial.
func (in *Inbound) defaultAllows(p DefaultPolicy, c Client) (allowed bool, why string) {
	meshed := c.Identity != ""
	inCluster := slices.ContainsFunc(in.ClusterNetworks, func(n netip.Prefix) bool { return n.Contains(c.Addr) })
	switch p {
	case AllUnauthenticated, Audit:
		return true, ""
	case AllAuthenticated:
		return meshed, " (the client is not meshed)"
	case ClusterUnauthenticated:
		return inCluster, " (the client is outside the cluster networks)"
	case ClusterAuthenticated:
		switch {
		case !meshed:
			return false, " (the client is not meshed)"
		case !inCluster:
			return false, " (the client is outside the cluster networks)"
		}
		return true, ""
	}
	return false, ""
}

func policyName(p DefaultPolicy) string {
	switch p {
	case AllUnauthenticated, AllAuthenticated, ClusterUnauthenticated, ClusterAuthenticated, Deny, Audit:
		return string(p)
	case "":
		return "(none set: deny)"
	}
	return fmt.Sprintf("%q (unknown: deny)", string(p))
}

// subject names what the policy is of: the Server, or the bare port.
func (in *Inbound) subject() string {
	if in.Server != "" {
		return "Server " + in.Server
	}
	return fmt.Sprintf("port %d", in.Port)
}

func describe(c Client) string {
	addr := "unknown address"
	if c.Addr.IsValid() {
		addr = c.Addr.String()
	}
	if c.Identity == "" {
		return "unmeshed client " + addr
	}
	return fmt.Sprintf("client %s (%s)", c.Identity, addr)
}

// firstMatch returns the first authorization that allows c.
func firstMatch(as []Authorization, c Client) *Authorization {
	for i := range as {
		if as[i].allows(c) {
			return &as[i]
		}
	}
	return nil
}

// allows reports whether all of a's required authentications hold for c.
func (a *Authorization) allows(c Client) bool {
	if len(a.Networks) > 0 && !slices.ContainsFunc(a.Networks, func(n Network) bool { return n.contains(c.Addr) }) {
		return false
	}
	if a.MeshTLS != nil && !a.MeshTLS.accepts(c.Identity) {
		return false
	}
	return true
}

func (n *Network) contains(addr netip.Addr) bool {
	if !n.Prefix.Contains(addr) {
		return false
	}
	return !slices.ContainsFunc(n.Except, func(e netip.Prefix) bool { return e.Contains(addr) })
}

// accepts reports whether a meshed client with identity id is listed.
func (m *MeshTLS) accepts(id string) bool {
	if id == "" {
		return false
	}
	for _, want := range m.Identities {
		switch {
		case want == "*":
			return true
		case strings.HasPrefix(want, "*."):
			if strings.HasSuffix(id, want[1:]) {
				return true
			}
		case want == id:
			return true
		}
	}
	return slices.ContainsFunc(m.Prefixes, func(p string) bool { return p != "" && strings.HasPrefix(id, p) })
}
