package policy

import (
	"cmp"
	"slices"
	"strings"

	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/routes"
)

// Path match ranks, most specific first: an exact path, then a regular
// expression, then a prefix (a regex is more specific than the catch-all
// "/" prefix most route sets end with).
const (
	pathExactRank = iota
	pathRegexRank
	pathPrefixRank
)

// precedence is where one match ranks among all matches of the routes of a
// destination (Gateway API precedence).
type precedence struct {
	grpc bool
	// HTTPRoute: path kind and length, method, header and query counts.
	path, pathLen, headers, queryParams int
	method                              bool
	// GRPCRoute: lengths of the service and method matched.
	service, grpcMethod int
}

// compare orders a before b when a is more specific. GRPCRoute matches come
// first: they match gRPC requests only.
func (a precedence) compare(b precedence) int {
	if a.grpc != b.grpc {
		if a.grpc {
			return -1
		}
		return 1
	}
	if a.grpc {
		return cmp.Or(
			cmp.Compare(b.service, a.service),
			cmp.Compare(b.grpcMethod, a.grpcMethod),
			cmp.Compare(b.headers, a.headers))
	}
	return cmp.Or(
		cmp.Compare(a.path, b.path),
		cmp.Compare(b.pathLen, a.pathLen),
		cmp.Compare(boolRank(b.method), boolRank(a.method)),
		cmp.Compare(b.headers, a.headers),
		cmp.Compare(b.queryParams, a.queryParams))
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// entry is one match of one rule of one route.
type entry struct {
	route       *compiledRoute
	rule, match int
	prec        precedence
}

// build assembles the policy of one Service port: the Service's defaults,
// then every match of every attached route in precedence order, adjacent
// matches of one rule folded back into one rule.
func (c *Compiled) build(svc *model.Service, port uint16) *routes.Policy {
	key := svcKey{svc.Namespace, svc.Name}
	defaults := c.defaults[key]
	p := &routes.Policy{
		Service: key.String(),
		Port:    port,
		Budget:  defaults.budget(),
		Defaults: routes.Rule{
			Timeouts: defaults.timeouts(),
			Retry:    defaults.retry(),
			Breaker:  defaults.breaker(),
		},
	}
	var entries []entry
	for _, r := range c.attached[key] {
		if !slices.ContainsFunc(r.parents, func(pa parent) bool { return pa.attaches(svc, port) }) {
			continue
		}
		for i, rule := range r.rules {
			for j, prec := range rule.precedence {
				entries = append(entries, entry{route: r, rule: i, match: j, prec: prec})
			}
		}
	}
	slices.SortStableFunc(entries, func(a, b entry) int {
		return cmp.Or(
			a.prec.compare(b.prec),
			a.route.created.Compare(b.route.created),
			strings.Compare(a.route.ref.namespace, b.route.ref.namespace),
			strings.Compare(a.route.ref.name, b.route.ref.name),
			cmp.Compare(a.rule, b.rule),
			cmp.Compare(a.match, b.match))
	})
	// A rule whose matches rank apart appears more than once; every copy
	// shares one Breaker (and Retry), so a per-route breaker is one.
	made := map[*compiledRule]routes.Rule{}
	ruleFor := func(r *compiledRoute, cr *compiledRule, match []routes.Match) routes.Rule {
		rule, ok := made[cr]
		if !ok {
			rule = c.rule(r, cr, nil, &p.Defaults, defaults, port)
			made[cr] = rule
		}
		rule.Matches = match
		return rule
	}
	for i, e := range entries {
		cr := &e.route.rules[e.rule]
		var match []routes.Match
		if len(cr.rule.Matches) > 0 {
			match = []routes.Match{cr.rule.Matches[e.match]}
		}
		if i > 0 && entries[i-1].route == e.route {
			last := &p.Routes[len(p.Routes)-1]
			if entries[i-1].rule == e.rule {
				r := &last.Rules[len(last.Rules)-1]
				r.Matches = append(r.Matches, match...)
				continue
			}
			last.Rules = append(last.Rules, ruleFor(e.route, cr, match))
			continue
		}
		p.Routes = append(p.Routes, routes.Route{
			Kind: e.route.ref.kind, Namespace: e.route.ref.namespace, Name: e.route.ref.name,
			Rules: []routes.Rule{ruleFor(e.route, cr, match)},
		})
	}
	return p
}

// rule is a compiled rule made whole for one destination: backends without
// a port take the destination's, the Service's annotations fill in what the
// route's do not say, and the Gateway API's timeouts and retry win over
// both.
func (c *Compiled) rule(r *compiledRoute, cr *compiledRule, matches []routes.Match, defaults *routes.Rule, svcSettings settings, port uint16) routes.Rule {
	out := cr.rule
	out.Matches = matches
	out.Backends = c.withPort(cr.rule.Backends, port)
	out.Mirrors = nil
	set := svcSettings.over(r.settings)
	compare := set.compareHeaders()
	for _, m := range cr.rule.Mirrors {
		m.Backend = c.withPort([]routes.Backend{m.Backend}, port)[0]
		m.CompareHeaders = compare
		out.Mirrors = append(out.Mirrors, m)
	}
	out.Timeouts = set.timeouts()
	if cr.request != nil {
		out.Timeouts.Request = *cr.request
	}
	if cr.backendRequest != nil {
		out.Timeouts.BackendRequest = *cr.backendRequest
	}
	out.Retry = set.retry()
	if g := cr.retry; g != nil {
		out.Retry = gatewayRetryOver(out.Retry, g)
	}
	// A route with no breaker annotation of its own shares the Service's
	// breaker (the very same pointer): the balancer tells a per-route
	// breaker from the Service's by that.
	out.Breaker = defaults.Breaker
	if r.settings.hasAny(breakerKeys...) {
		out.Breaker = set.breaker()
	}
	return out
}

// gatewayRetryOver applies an HTTPRoute's rules[].retry over the retry the
// annotations describe.
func gatewayRetryOver(r *routes.Retry, g *gatewayRetry) *routes.Retry {
	out := routes.Retry{Limit: DefaultRetryLimit, BackoffBase: DefaultRetryBackoffBase, BackoffMax: DefaultRetryBackoffMax}
	if r != nil {
		out = *r
	}
	if len(g.codes) > 0 {
		out.HTTP, out.GatewayError = g.codes, false
	}
	if g.attempts != nil {
		out.Limit = *g.attempts
	}
	if g.backoff != nil && *g.backoff > 0 {
		out.BackoffBase = *g.backoff
		out.BackoffMax = max(out.BackoffMax, *g.backoff)
	}
	if len(out.HTTP) == 0 && len(out.GRPC) == 0 && !out.GatewayError && !out.Reset {
		out.GatewayError = true // attempts without codes: 502, 503 and 504
	}
	return &out
}

func (c *Compiled) withPort(backends []routes.Backend, port uint16) []routes.Backend {
	if len(backends) == 0 {
		return nil
	}
	out := slices.Clone(backends)
	for i := range out {
		if out[i].Port == 0 {
			ns, name, _ := strings.Cut(out[i].Service, "/")
			out[i].Port = port
			out[i].Authority = (&compileEnv{clusterDomain: c.clusterDomain}).authority(svcKey{ns, name}, port)
		}
	}
	return out
}
