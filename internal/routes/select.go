package routes

import (
	"net/url"
	"regexp"
	"strings"
)

// Headers is how Select reads a request's header fields.
type Headers interface {
	// Lookup returns the value of the field named name (lower case), the
	// values of a repeated field joined with ",", and whether it is there.
	Lookup(name string) (string, bool)
}

// Selection is the rule Select chose for a request.
type Selection struct {
	// Route is the route of Rule; nil for the destination's Defaults.
	Route *Route
	// Rule is the chosen rule, or &Policy.Defaults when the destination
	// has no routes.
	Rule *Rule
	// Match is the match that selected Rule; nil when the rule matches
	// everything (no Matches) or for the Defaults. A PathPrefix rewrite
	// replaces what its Path matched.
	Match *Match
}

// Select chooses the rule for a request: the first rule of the first
// route with a matching Match, in the order of p.Routes (which the
// controller sorts by Gateway API precedence). path is the request's
// :path, query included. With no routes it selects &p.Defaults; when
// routes exist and none matches, ok is false: the request has no route
// (404, gRPC UNIMPLEMENTED).
func (p *Policy) Select(method, path string, h Headers) (sel Selection, ok bool) {
	if len(p.Routes) == 0 {
		return Selection{Rule: &p.Defaults}, true
	}
	reqPath, query, _ := strings.Cut(path, "?")
	for i := range p.Routes {
		route := &p.Routes[i]
		for j := range route.Rules {
			rule := &route.Rules[j]
			if len(rule.Matches) == 0 {
				return Selection{Route: route, Rule: rule}, true
			}
			for k := range rule.Matches {
				if m := &rule.Matches[k]; m.matches(method, reqPath, query, h) {
					return Selection{Route: route, Rule: rule, Match: m}, true
				}
			}
		}
	}
	return Selection{}, false
}

// matches reports whether every part of m holds for the request.
func (m *Match) matches(method, path, query string, h Headers) bool {
	if m.Method != "" && m.Method != method {
		return false
	}
	if m.Path != nil && !m.Path.matches(path) {
		return false
	}
	for i := range m.Headers {
		hm := &m.Headers[i]
		v, ok := h.Lookup(strings.ToLower(hm.Name))
		if !ok || !hm.matches(v) {
			return false
		}
	}
	for i := range m.QueryParams {
		qm := &m.QueryParams[i]
		v, ok := queryValue(query, qm.Name)
		if !ok || !qm.matches(v) {
			return false
		}
	}
	return true
}

// matches compares the request's path (without its query) as the Gateway
// API says: Exact byte for byte, PathPrefix by whole segments ("/foo"
// matches "/foo" and "/foo/bar", not "/foobar"; a trailing "/" of the
// prefix is ignored), RegularExpression over the whole path. A type this
// proxy does not know, or a regular expression nobody compiled, matches
// nothing.
func (pm *PathMatch) matches(path string) bool {
	switch pm.Type {
	case PathExact:
		return path == pm.Value
	case PathPrefix:
		return HasPathPrefix(path, pm.Value)
	case PathRegex:
		return pm.Regex != nil && pm.Regex.MatchString(path)
	}
	return false
}

// HasPathPrefix reports whether path starts with the path segments of
// prefix (a trailing "/" of prefix ignored; "/" matches every path).
func HasPathPrefix(path, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return true
	}
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

func (vm *ValueMatch) matches(v string) bool {
	if vm.Regex != nil {
		return vm.Regex.MatchString(v)
	}
	return v == vm.Value
}

// queryValue returns the first value of the query parameter named name
// (compared exactly, after unescaping), unescaped. A parameter that
// cannot be unescaped is skipped.
func queryValue(query, name string) (string, bool) {
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k != name {
			if !strings.ContainsAny(k, "%+") {
				continue
			}
			if uk, err := url.QueryUnescape(k); err != nil || uk != name {
				continue
			}
		}
		uv, err := url.QueryUnescape(v)
		if err != nil {
			continue
		}
		return uv, true
	}
	return "", false
}

// CompileRegex compiles a Gateway API RegularExpression match as RE2 over
// the whole value: `^(?:expr)$`. Whoever builds a Policy compiles its
// regular expressions with it, once.
func CompileRegex(expr string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// PickBackend picks one of backends at random by weight: a backend's share
// is its Weight over the sum of all weights, so weight 0 gets nothing.
// randN returns a uniform number in [0, n) (math/rand/v2's Uint64N, or a
// test's seeded source). ok is false when no backend has a weight.
func PickBackend(backends []Backend, randN func(n uint64) uint64) (b *Backend, ok bool) {
	var total uint64
	for i := range backends {
		total += uint64(backends[i].Weight)
	}
	if total == 0 {
		return nil, false
	}
	x := randN(total)
	for i := range backends {
		w := uint64(backends[i].Weight)
		if x < w {
			return &backends[i], true
		}
		x -= w
	}
	return nil, false // unreachable while randN keeps to [0, n)
}
