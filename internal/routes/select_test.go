package routes

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

type testHeaders map[string][]string

func (h testHeaders) Lookup(name string) (string, bool) {
	v, ok := h[name]
	return strings.Join(v, ","), ok
}

func mustRegex(t *testing.T, expr string) *regexp.Regexp {
	t.Helper()
	re, err := CompileRegex(expr)
	if err != nil {
		t.Fatal(err)
	}
	return re
}

func route(name string, rules ...Rule) Route {
	return Route{Kind: "HTTPRoute", Namespace: "demo", Name: name, Rules: rules}
}

func onMatch(ms ...Match) Rule { return Rule{Matches: ms} }

func prefix(v string) *PathMatch { return &PathMatch{Type: PathPrefix, Value: v} }

func TestSelectMatchesEachKind(t *testing.T) {
	for _, tt := range []struct {
		name    string
		match   Match
		method  string
		path    string
		headers testHeaders
		want    bool
	}{
		{"exact equal", Match{Path: &PathMatch{Type: PathExact, Value: "/a/b"}}, "GET", "/a/b", nil, true},
		{"exact ignores query", Match{Path: &PathMatch{Type: PathExact, Value: "/a/b"}}, "GET", "/a/b?x=1", nil, true},
		{"exact longer", Match{Path: &PathMatch{Type: PathExact, Value: "/a/b"}}, "GET", "/a/b/", nil, false},
		{"exact is case-sensitive", Match{Path: &PathMatch{Type: PathExact, Value: "/a"}}, "GET", "/A", nil, false},
		{"prefix itself", Match{Path: prefix("/foo")}, "GET", "/foo", nil, true},
		{"prefix segment", Match{Path: prefix("/foo")}, "GET", "/foo/bar", nil, true},
		{"prefix trailing slash request", Match{Path: prefix("/foo")}, "GET", "/foo/", nil, true},
		{"prefix not mid-segment", Match{Path: prefix("/foo")}, "GET", "/foobar", nil, false},
		{"prefix with trailing slash ignores it", Match{Path: prefix("/foo/")}, "GET", "/foo", nil, true},
		{"prefix with trailing slash not mid-segment", Match{Path: prefix("/foo/")}, "GET", "/foobar", nil, false},
		{"prefix before query", Match{Path: prefix("/foo")}, "GET", "/foo?bar=1", nil, true},
		{"prefix root matches all", Match{Path: prefix("/")}, "GET", "/anything", nil, true},
		{"regex full match", Match{Path: &PathMatch{Type: PathRegex, Value: "/v[0-9]+/.*", Regex: mustRegex(t, "/v[0-9]+/.*")}}, "GET", "/v2/x", nil, true},
		{"regex is anchored at the start", Match{Path: &PathMatch{Type: PathRegex, Regex: mustRegex(t, "/v[0-9]+")}}, "GET", "/x/v2", nil, false},
		{"regex is anchored at the end", Match{Path: &PathMatch{Type: PathRegex, Regex: mustRegex(t, "/v[0-9]+")}}, "GET", "/v2/x", nil, false},
		{"regex alternation full", Match{Path: &PathMatch{Type: PathRegex, Regex: mustRegex(t, "/a|/ab")}}, "GET", "/ab", nil, true},
		{"regex not compiled matches nothing", Match{Path: &PathMatch{Type: PathRegex, Value: ".*"}}, "GET", "/x", nil, false},
		{"unknown path type matches nothing", Match{Path: &PathMatch{Type: "Glob", Value: "/*"}}, "GET", "/x", nil, false},
		{"method", Match{Method: "POST"}, "POST", "/", nil, true},
		{"method other", Match{Method: "POST"}, "GET", "/", nil, false},
		{"header name case-insensitive", Match{Headers: []ValueMatch{{Name: "X-Canary", Value: "yes"}}}, "GET", "/", testHeaders{"x-canary": {"yes"}}, true},
		{"header value case-sensitive", Match{Headers: []ValueMatch{{Name: "x-canary", Value: "yes"}}}, "GET", "/", testHeaders{"x-canary": {"YES"}}, false},
		{"header missing", Match{Headers: []ValueMatch{{Name: "x-canary", Value: ""}}}, "GET", "/", nil, false},
		{"header present empty", Match{Headers: []ValueMatch{{Name: "x-canary", Value: ""}}}, "GET", "/", testHeaders{"x-canary": {""}}, true},
		{"header regex", Match{Headers: []ValueMatch{{Name: "x-user", Regex: mustRegex(t, "u[0-9]+")}}}, "GET", "/", testHeaders{"x-user": {"u42"}}, true},
		{"header regex full", Match{Headers: []ValueMatch{{Name: "x-user", Regex: mustRegex(t, "u[0-9]+")}}}, "GET", "/", testHeaders{"x-user": {"au42"}}, false},
		{"all headers must hold", Match{Headers: []ValueMatch{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}}}, "GET", "/", testHeaders{"a": {"1"}}, false},
		{"query exact", Match{QueryParams: []ValueMatch{{Name: "v", Value: "2"}}}, "GET", "/p?a=1&v=2", nil, true},
		{"query name is exact", Match{QueryParams: []ValueMatch{{Name: "v", Value: "2"}}}, "GET", "/p?V=2", nil, false},
		{"query first value wins", Match{QueryParams: []ValueMatch{{Name: "v", Value: "2"}}}, "GET", "/p?v=1&v=2", nil, false},
		{"query unescaped", Match{QueryParams: []ValueMatch{{Name: "q", Value: "a b"}}}, "GET", "/p?q=a%20b", nil, true},
		{"query missing", Match{QueryParams: []ValueMatch{{Name: "v", Value: "2"}}}, "GET", "/p", nil, false},
		{"query regex", Match{QueryParams: []ValueMatch{{Name: "v", Regex: mustRegex(t, "[0-9]")}}}, "GET", "/p?v=7", nil, true},
		{"every part must hold", Match{Path: prefix("/api"), Method: "GET", Headers: []ValueMatch{{Name: "x", Value: "1"}}}, "GET", "/api/v", testHeaders{"x": {"2"}}, false},
	} {
		p := &Policy{Routes: []Route{route("r", onMatch(tt.match))}}
		_, ok := p.Select(tt.method, tt.path, tt.headers)
		if ok != tt.want {
			t.Errorf("%s: %s %s %v selected=%v, want %v", tt.name, tt.method, tt.path, tt.headers, ok, tt.want)
		}
	}
}

func TestSelectTakesTheFirstMatchingRuleInPrecedenceOrder(t *testing.T) {
	p := &Policy{Routes: []Route{
		route("exact", onMatch(Match{Path: &PathMatch{Type: PathExact, Value: "/api/v2"}})),
		route("api", onMatch(Match{Path: prefix("/api"), Headers: []ValueMatch{{Name: "x-canary", Value: "1"}}}),
			onMatch(Match{Path: prefix("/api")}, Match{Path: prefix("/v1")})),
		route("all", Rule{}),
	}}
	for _, tt := range []struct {
		path      string
		headers   testHeaders
		wantRoute string
		wantRule  int
		wantMatch *Match
	}{
		{"/api/v2", nil, "exact", 0, &p.Routes[0].Rules[0].Matches[0]},
		{"/api/v2", testHeaders{"x-canary": {"1"}}, "exact", 0, &p.Routes[0].Rules[0].Matches[0]},
		{"/api/v3", testHeaders{"x-canary": {"1"}}, "api", 0, &p.Routes[1].Rules[0].Matches[0]},
		{"/api/v3", nil, "api", 1, &p.Routes[1].Rules[1].Matches[0]},
		{"/v1/x", nil, "api", 1, &p.Routes[1].Rules[1].Matches[1]},
		{"/other", nil, "all", 0, nil},
	} {
		sel, ok := p.Select("GET", tt.path, tt.headers)
		if !ok {
			t.Errorf("%s: nothing selected", tt.path)
			continue
		}
		if sel.Route.Name != tt.wantRoute || sel.Rule != &sel.Route.Rules[tt.wantRule] || sel.Match != tt.wantMatch {
			t.Errorf("%s %v: route %s rule %p match %p, want route %s rule %d match %p", tt.path, tt.headers,
				sel.Route.Name, sel.Rule, sel.Match, tt.wantRoute, tt.wantRule, tt.wantMatch)
		}
		if got := sel.Route.RouteName(); got != "demo/"+tt.wantRoute {
			t.Errorf("route name %q", got)
		}
	}
}

func TestSelectTellsNoRoutesFromNoMatch(t *testing.T) {
	none := &Policy{Defaults: Rule{Timeouts: Timeouts{Request: 1}}}
	sel, ok := none.Select("GET", "/x", nil)
	if !ok || sel.Rule != &none.Defaults || sel.Route != nil || sel.Match != nil {
		t.Errorf("no routes: %+v %v, want the Defaults", sel, ok)
	}
	some := &Policy{Routes: []Route{route("r", onMatch(Match{Path: prefix("/api")}))}}
	if sel, ok := some.Select("GET", "/web", nil); ok || sel.Rule != nil {
		t.Errorf("routes exist, none matches: %+v %v, want not ok", sel, ok)
	}
}

func TestHasPathPrefixBySegments(t *testing.T) {
	for _, tt := range []struct {
		path, prefix string
		want         bool
	}{
		{"/foo", "/foo", true}, {"/foo/bar", "/foo", true}, {"/foobar", "/foo", false},
		{"/foo", "/foo/", true}, {"/foo/", "/foo/", true}, {"/fo", "/foo", false},
		{"/", "/", true}, {"/x", "/", true}, {"/foo/bar/baz", "/foo/bar", true}, {"/foo/barbaz", "/foo/bar", false},
	} {
		if got := HasPathPrefix(tt.path, tt.prefix); got != tt.want {
			t.Errorf("HasPathPrefix(%q, %q) = %v, want %v", tt.path, tt.prefix, got, tt.want)
		}
	}
}

func TestPickBackendSharesByWeight(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	backends := []Backend{{Authority: "a:80", Weight: 90}, {Authority: "b:80", Weight: 10}, {Authority: "c:80", Weight: 0}}
	counts := map[string]int{}
	const n = 100000
	for range n {
		b, ok := PickBackend(backends, r.Uint64N)
		if !ok {
			t.Fatal("no backend picked")
		}
		counts[b.Authority]++
	}
	if counts["c:80"] != 0 {
		t.Errorf("weight 0 got %d requests", counts["c:80"])
	}
	if share := float64(counts["a:80"]) / n; share < 0.89 || share > 0.91 {
		t.Errorf("weight 90 of 100 got %.3f of the picks", share)
	}
	if _, ok := PickBackend([]Backend{{Weight: 0}, {Weight: 0}}, r.Uint64N); ok {
		t.Error("all weights 0 picked a backend")
	}
	if _, ok := PickBackend(nil, r.Uint64N); ok {
		t.Error("no backends picked one")
	}
	// Every value randN may return lands on a backend with weight.
	for x := range uint64(100) {
		b, ok := PickBackend(backends, func(uint64) uint64 { return x })
		if !ok || (x < 90) != (b.Authority == "a:80") || b.Weight == 0 {
			t.Errorf("randN=%d picked %+v", x, b)
		}
	}
}
