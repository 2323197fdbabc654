package policy

import (
	"slices"
	"testing"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/routes"
)

// order lists "route#rule:path" of a policy's rules in order, one entry per
// match.
func order(p *routes.Policy) []string {
	var out []string
	for _, r := range p.Routes {
		for _, rule := range r.Rules {
			for _, m := range rule.Matches {
				desc := r.Name + ":"
				if m.Path != nil {
					desc += m.Path.Value
				}
				if m.Method != "" {
					desc += " " + m.Method
				}
				for _, h := range m.Headers {
					desc += " h:" + h.Name
				}
				for _, q := range m.QueryParams {
					desc += " q:" + q.Name
				}
				out = append(out, desc)
			}
		}
	}
	return out
}

func TestPrecedenceFollowsGatewayAPI(t *testing.T) {
	older := created(httpRoute(t, `
metadata: {name: b-older}
spec:`+parentWeb+`
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
    - path: {type: PathPrefix, value: /api}
      headers: [{name: x-a, value: "1"}]
    - path: {type: PathPrefix, value: /api}
      queryParams: [{name: q, value: "1"}, {name: r, value: "2"}]
    backendRefs: [{name: web, port: 8080}]
`), 0)
	newer := created(httpRoute(t, `
metadata: {name: a-newer}
spec:`+parentWeb+`
  rules:
  - matches:
    - path: {type: PathPrefix, value: /api/v1}
    - path: {type: Exact, value: /api}
    - path: {type: PathPrefix, value: /api}
      method: GET
    - path: {type: PathPrefix, value: /}
    backendRefs: [{name: web, port: 8080}]
  - matches:
    - path: {type: RegularExpression, value: "/item/[0-9]+"}
    backendRefs: [{name: web, port: 8080}]
`), time.Hour)
	p := policyOf(t, inputs{services: []*model.Service{svc("web", "", nil)}, http: []*gatewayv1.HTTPRoute{older, newer}})
	want := []string{
		"a-newer:/api",         // exact
		"a-newer:/item/[0-9]+", // regex
		"a-newer:/api/v1",      // longest prefix
		"a-newer:/api GET",     // method
		"b-older:/api h:x-a",   // most headers
		"b-older:/api q:q q:r", // most query params
		"b-older:/",            // tie: the older route first
		"a-newer:/",
	}
	if got := order(p); !slices.Equal(got, want) {
		t.Errorf("order:\n got %q\nwant %q", got, want)
	}
	// Ties in creation time go by namespace/name.
	older.CreationTimestamp = newer.CreationTimestamp
	p = policyOf(t, inputs{services: []*model.Service{svc("web", "", nil)}, http: []*gatewayv1.HTTPRoute{older, newer}})
	if got := order(p); got[len(got)-2] != "a-newer:/" || got[len(got)-1] != "b-older:/" {
		t.Errorf("same creation time: want a-newer before b-older, got %q", got)
	}
}

func TestAdjacentMatchesOfOneRuleStayOneRule(t *testing.T) {
	r := httpRoute(t, `
metadata: {name: split}
spec:`+parentWeb+`
  rules:
  - matches:
    - path: {type: PathPrefix, value: /a}
    - path: {type: PathPrefix, value: /b}
    backendRefs: [{name: web, port: 8080}]
`)
	p := policyOf(t, inputs{services: []*model.Service{svc("web", "", nil)}, http: []*gatewayv1.HTTPRoute{r}})
	if len(p.Routes) != 1 || len(p.Routes[0].Rules) != 1 || len(p.Routes[0].Rules[0].Matches) != 2 {
		t.Fatalf("want one route, one rule, two matches: %+v", p.Routes)
	}
	if p.Routes[0].RouteName() != "demo/split" || p.Routes[0].Kind != "HTTPRoute" {
		t.Errorf("route = %s %s", p.Routes[0].Kind, p.Routes[0].RouteName())
	}
}

// TestRuleSplitByPrecedenceSharesItsBreaker: a rule whose two matches rank
// apart (another route's match between them) appears twice, and both
// copies share one per-route breaker.
func TestRuleSplitByPrecedenceSharesItsBreaker(t *testing.T) {
	a := created(httpRoute(t, `
metadata: {name: a, annotations: {skein.io/breaker-consecutive: "3"}}
spec:`+parentWeb+`
  rules:
  - matches: [{path: {type: Exact, value: /x}}, {path: {type: PathPrefix, value: /}}]
`), 0)
	b := created(httpRoute(t, "metadata: {name: b}\nspec:"+parentWeb+"\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /api}}]\n"), 0)
	p := policyOf(t, inputs{services: []*model.Service{svc("web", "", nil)}, http: []*gatewayv1.HTTPRoute{a, b}})
	if got := order(p); !slices.Equal(got, []string{"a:/x", "b:/api", "a:/"}) {
		t.Fatalf("order = %q", got)
	}
	first, second := p.Routes[0].Rules[0], p.Routes[2].Rules[0]
	if first.Breaker != second.Breaker || first.Breaker.Consecutive != 3 {
		t.Errorf("the two copies of one rule must share its breaker: %p %p", first.Breaker, second.Breaker)
	}
}

func TestWeights(t *testing.T) {
	r := httpRoute(t, `
metadata: {name: split}
spec:`+parentWeb+`
  rules:
  - backendRefs:
    - {name: web-v1, port: 8080}
    - {name: web-v2, port: 8080, weight: 10}
    - {name: web-v3, weight: 0}
`)
	services := []*model.Service{svc("web", "", nil), svc("web-v1", "", nil), svc("web-v2", "", nil), svc("web-v3", "", nil)}
	p := policyOf(t, inputs{services: services, http: []*gatewayv1.HTTPRoute{r}})
	want := []string{
		"web-v1.demo.svc.cluster.local:8080=1", // missing weight: 1
		"web-v2.demo.svc.cluster.local:8080=10",
		"web-v3.demo.svc.cluster.local:8080=0", // no port: the parent's
	}
	if got := backends(p.Routes[0].Rules[0]); !slices.Equal(got, want) {
		t.Errorf("backends = %q, want %q", got, want)
	}
	if len(p.Routes[0].Rules[0].Matches) != 0 {
		t.Errorf("a rule without matches must match everything, got %+v", p.Routes[0].Rules[0].Matches)
	}
}

func TestPolicyByClusterIPAndUnknownDestinations(t *testing.T) {
	c := compile(t, inputs{services: []*model.Service{svc("web", "10.96.0.10", map[string]string{AnnTimeoutRequest: "2s"})}})
	p := c.Policy("10.96.0.10:8080")
	if p == nil || p.Service != "demo/web" || p.Port != 8080 || len(p.Routes) != 0 {
		t.Fatalf("policy by cluster IP = %+v", p)
	}
	if p.Defaults.Timeouts.Request != 2*time.Second || p.Budget.Ratio != 0.2 || p.Defaults.Breaker.Consecutive != 7 {
		t.Errorf("defaults = %+v budget %+v", p.Defaults, p.Budget)
	}
	for _, dst := range []string{"10.96.0.10:9999", "nope.demo.svc.cluster.local:8080", "10.1.1.1:8080", "example.com:80", "junk"} {
		if p := c.Policy(dst); p != nil {
			t.Errorf("Policy(%q) = %+v, want nil", dst, p)
		}
	}
}

func TestGRPCRouteCompilesToPaths(t *testing.T) {
	r := grpcRoute(t, `
metadata: {name: rpc}
spec:`+parentWeb+`
  rules:
  - matches:
    - method: {service: emoji.Emoji, method: List}
    - method: {service: emoji.Emoji}
    - method: {method: Vote}
    - method: {type: RegularExpression, service: "emoji\\..*", method: "Get.*"}
      headers: [{name: x-canary, value: "1"}]
    backendRefs: [{name: web, port: 8080}]
`)
	p := policyOf(t, inputs{services: []*model.Service{svc("web", "", nil)}, grpc: []*gatewayv1.GRPCRoute{r}})
	if p.Routes[0].Kind != "GRPCRoute" {
		t.Fatalf("kind = %s", p.Routes[0].Kind)
	}
	byValue := map[string]routes.Match{}
	for _, m := range p.Routes[0].Rules[0].Matches {
		if m.Method != "POST" || m.Headers[0].Name != "content-type" || !m.Headers[0].Regex.MatchString("application/grpc+proto") {
			t.Errorf("gRPC match %+v must require POST and a gRPC content-type", m)
		}
		byValue[m.Path.Value] = m
	}
	cases := []struct {
		path    string
		typ     routes.PathMatchType
		matches []string
		not     []string
	}{
		{"/emoji.Emoji/List", routes.PathExact, nil, nil},
		{"/emoji.Emoji", routes.PathPrefix, nil, nil},
		{"/[^/]+/Vote", routes.PathRegex, []string{"/emoji.Emoji/Vote", "/x.Y/Vote"}, []string{"/emoji.Emoji/Voted", "/a/b/Vote"}},
		{`/(?:emoji\..*)/(?:Get.*)`, routes.PathRegex, []string{"/emoji.Emoji/GetAll"}, []string{"/other.Emoji/GetAll", "/emoji.Emoji/List"}},
	}
	for _, c := range cases {
		m, ok := byValue[c.path]
		if !ok || m.Path.Type != c.typ {
			t.Errorf("no %s match %q in %+v", c.typ, c.path, byValue)
			continue
		}
		for _, s := range c.matches {
			if !m.Path.Regex.MatchString(s) {
				t.Errorf("%q does not match %s", s, c.path)
			}
		}
		for _, s := range c.not {
			if m.Path.Regex.MatchString(s) {
				t.Errorf("%q matches %s", s, c.path)
			}
		}
	}
	// Precedence: longest service first, then method, then headers.
	got := []string{}
	for _, m := range p.Routes[0].Rules[0].Matches {
		got = append(got, m.Path.Value)
	}
	want := []string{"/emoji.Emoji/List", "/emoji.Emoji", `/(?:emoji\..*)/(?:Get.*)`, "/[^/]+/Vote"}
	if !slices.Equal(got, want) {
		t.Errorf("gRPC order = %q, want %q", got, want)
	}
}

func TestGRPCRouteWithoutMatchesTakesGRPCOnlyAndComesFirst(t *testing.T) {
	g := grpcRoute(t, "metadata: {name: rpc}\nspec:"+parentWeb+"\n  rules:\n  - backendRefs: [{name: web, port: 8080}]\n")
	h := httpRoute(t, "metadata: {name: web}\nspec:"+parentWeb+"\n  rules:\n  - matches: [{path: {type: Exact, value: /x}}]\n")
	p := policyOf(t, inputs{services: []*model.Service{svc("web", "", nil)}, http: []*gatewayv1.HTTPRoute{h}, grpc: []*gatewayv1.GRPCRoute{g}})
	if len(p.Routes) != 2 || p.Routes[0].Kind != "GRPCRoute" || p.Routes[1].Kind != "HTTPRoute" {
		t.Fatalf("want the GRPCRoute first: %+v", p.Routes)
	}
	m := p.Routes[0].Rules[0].Matches
	if len(m) != 1 || m[0].Method != "POST" || m[0].Path != nil || m[0].Headers[0].Name != "content-type" {
		t.Errorf("implicit gRPC match = %+v", m)
	}
}

func TestParentRefs(t *testing.T) {
	services := []*model.Service{
		{Namespace: "demo", Name: "web", Ports: []model.ServicePort{{Name: "http", Port: 8080}, {Name: "admin", Port: 9090}}},
	}
	cases := []struct {
		parents        string
		on8080, on9090 bool
	}{
		{`[{group: "", kind: Service, name: web}]`, true, true},
		{`[{group: "", kind: Service, name: web, port: 9090}]`, false, true},
		{`[{group: "", kind: Service, name: web, sectionName: http}]`, true, false},
		{`[{name: some-gateway}]`, false, false}, // a Gateway's route: not ours
		{`[{group: gateway.networking.k8s.io, kind: Service, name: web}]`, false, false},
	}
	for _, c := range cases {
		r := httpRoute(t, "metadata: {name: r}\nspec:\n  parentRefs: "+c.parents+"\n  rules: [{}]\n")
		comp := compile(t, inputs{services: services, http: []*gatewayv1.HTTPRoute{r}})
		for port, want := range map[string]bool{"8080": c.on8080, "9090": c.on9090} {
			p := comp.Policy("web.demo.svc.cluster.local:" + port)
			if got := len(p.Routes) == 1; got != want {
				t.Errorf("parentRefs %s: attached on %s = %v, want %v", c.parents, port, got, want)
			}
		}
	}
}

func TestFilters(t *testing.T) {
	r := httpRoute(t, `
metadata: {name: f}
spec:`+parentWeb+`
  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-set, value: "1"}]
        add: [{name: x-add, value: "2"}]
        remove: [x-gone]
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-resp, value: "3"}]}
    - type: URLRewrite
      urlRewrite: {hostname: new.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 8080}, percent: 25}
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow}, fraction: {numerator: 1, denominator: 3}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow}}
  - matches: [{path: {type: Exact, value: /moved}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: elsewhere.example, port: 8443, statusCode: 301, path: {type: ReplaceFullPath, replaceFullPath: /here}}
`)
	p := policyOf(t, inputs{services: []*model.Service{svc("web", "", nil), svc("shadow", "", nil)}, http: []*gatewayv1.HTTPRoute{r}})
	redirect, rule := p.Routes[0].Rules[0], p.Routes[0].Rules[1] // the exact match ranks first
	if h := rule.RequestHeaders; h == nil || h.Set[0] != (routes.Header{Name: "x-set", Value: "1"}) || h.Add[0].Name != "x-add" || h.Remove[0] != "x-gone" {
		t.Errorf("request headers = %+v", rule.RequestHeaders)
	}
	if h := rule.ResponseHeaders; h == nil || h.Set[0].Name != "x-resp" {
		t.Errorf("response headers = %+v", rule.ResponseHeaders)
	}
	if rw := rule.Rewrite; rw == nil || rw.Hostname != "new.example" || rw.Path == nil || !rw.Path.IsPrefix || rw.Path.Prefix != "/new" {
		t.Errorf("rewrite = %+v", rule.Rewrite)
	}
	if len(rule.Mirrors) != 3 {
		t.Fatalf("mirrors = %+v", rule.Mirrors)
	}
	for i, want := range []float64{25, 33.333333, 100} {
		m := rule.Mirrors[i]
		if m.Percent != want || m.Backend.Authority != "shadow.demo.svc.cluster.local:8080" ||
			!slices.Equal(m.CompareHeaders, []string{"content-type", "grpc-status"}) {
			t.Errorf("mirror %d = %+v, want percent %v", i, m, want)
		}
	}
	rd := redirect.Redirect
	if rd == nil || rd.Scheme != "https" || rd.Hostname != "elsewhere.example" || rd.Port != 8443 || rd.StatusCode != 301 || rd.Path.Full != "/here" {
		t.Errorf("redirect = %+v", rd)
	}
}

func TestRedirectDefaultsTo302(t *testing.T) {
	r := httpRoute(t, "metadata: {name: f}\nspec:"+parentWeb+"\n  rules:\n  - filters: [{type: RequestRedirect, requestRedirect: {hostname: x.example}}]\n")
	p := policyOf(t, inputs{services: []*model.Service{svc("web", "", nil)}, http: []*gatewayv1.HTTPRoute{r}})
	if rd := p.Routes[0].Rules[0].Redirect; rd.StatusCode != 302 || rd.Path != nil {
		t.Errorf("redirect = %+v", rd)
	}
}

func TestGatewayTimeoutsAndRetry(t *testing.T) {
	r := httpRoute(t, `
metadata:
  name: t
  annotations: {skein.io/timeout-request: 5s, skein.io/retry-http: 5xx}
spec:`+parentWeb+`
  rules:
  - timeouts: {request: 200ms, backendRequest: 100ms}
    retry: {codes: [503], attempts: 4, backoff: 50ms}
  - timeouts: {request: 0s}
`)
	p := policyOf(t, inputs{services: []*model.Service{svc("web", "", nil)}, http: []*gatewayv1.HTTPRoute{r}})
	first, second := p.Routes[0].Rules[0], p.Routes[0].Rules[1]
	if first.Timeouts.Request != 200*time.Millisecond || first.Timeouts.BackendRequest != 100*time.Millisecond {
		t.Errorf("timeouts = %+v: the Gateway API's win over annotations", first.Timeouts)
	}
	if rt := first.Retry; rt == nil || rt.Limit != 4 || rt.BackoffBase != 50*time.Millisecond || !slices.Equal(rt.HTTP, []routes.StatusRange{{Min: 503, Max: 503}}) {
		t.Errorf("retry = %+v", first.Retry)
	}
	if second.Timeouts.Request != 0 {
		t.Errorf("timeouts.request 0s must turn the annotation's 5s off, got %v", second.Timeouts.Request)
	}
	if rt := second.Retry; rt == nil || !slices.Equal(rt.HTTP, []routes.StatusRange{{Min: 500, Max: 599}}) {
		t.Errorf("second rule retry = %+v, want the annotation's", second.Retry)
	}
}

func TestServiceDefaultsMergeIntoRules(t *testing.T) {
	web := svc("web", "", map[string]string{
		AnnTimeoutRequest:       "3s",
		AnnTimeoutIdle:          "1m",
		AnnRetryGRPC:            "unavailable",
		AnnRetryLimit:           "5",
		AnnMirrorCompareHeaders: "content-type,x-version",
	})
	own := httpRoute(t, `
metadata:
  name: own
  annotations: {skein.io/timeout-request: 1s, skein.io/retry-limit: "1", skein.io/breaker-consecutive: "3"}
spec:`+parentWeb+`
  rules:
  - matches: [{path: {type: Exact, value: /own}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web}}}]
`)
	plain := httpRoute(t, "metadata: {name: plain}\nspec:"+parentWeb+"\n  rules: [{}]\n")
	p := policyOf(t, inputs{services: []*model.Service{web}, http: []*gatewayv1.HTTPRoute{own, plain}})
	ownRule, plainRule := p.Routes[0].Rules[0], p.Routes[1].Rules[0]

	if ownRule.Timeouts.Request != time.Second || ownRule.Timeouts.Idle != time.Minute {
		t.Errorf("own timeouts = %+v: the route's request, the Service's idle", ownRule.Timeouts)
	}
	if rt := ownRule.Retry; rt == nil || rt.Limit != 1 || !slices.Equal(rt.GRPC, []int{14}) {
		t.Errorf("own retry = %+v: the route's limit over the Service's codes", ownRule.Retry)
	}
	if ownRule.Breaker == p.Defaults.Breaker || ownRule.Breaker.Consecutive != 3 || ownRule.Breaker.Window != 30*time.Second {
		t.Errorf("own breaker = %+v: a per-route breaker of its own", ownRule.Breaker)
	}
	if got := ownRule.Mirrors[0].CompareHeaders; !slices.Equal(got, []string{"content-type", "x-version"}) {
		t.Errorf("compare headers = %q, want the Service's", got)
	}
	if plainRule.Timeouts.Request != 3*time.Second || plainRule.Retry == nil || plainRule.Retry.Limit != 5 {
		t.Errorf("plain rule = %+v: the Service's defaults filled in", plainRule)
	}
	if plainRule.Breaker != p.Defaults.Breaker {
		t.Errorf("a route without breaker annotations must share the Service's breaker pointer")
	}
}
