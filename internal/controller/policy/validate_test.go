package policy

import (
	"strings"
	"testing"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skeinmesh/skein/internal/model"
)

func TestValidationNamesObjectAndField(t *testing.T) {
	cases := []struct {
		name, rules string
		want        string
	}{
		{"unknown backend", `
  - backendRefs: [{name: web, port: 8080}, {name: nope, port: 8080}]`,
			"HTTPRoute demo/bad: spec.rules[0].backendRefs[1]: Service demo/nope not found"},
		{"bad path regex", `
  - matches: [{path: {type: RegularExpression, value: "/a(b"}}]`,
			"HTTPRoute demo/bad: spec.rules[0].matches[0].path.value: bad regular expression \"/a(b\": error parsing regexp: missing closing ): `/a(b`"},
		{"bad header regex", `
  - matches: [{headers: [{type: RegularExpression, name: x-a, value: "[z-a]"}]}]`,
			"HTTPRoute demo/bad: spec.rules[0].matches[0].headers[0].value: bad regular expression"},
		{"all weights zero", `
  - backendRefs: [{name: web, port: 8080, weight: 0}, {name: web, port: 8080, weight: 0}]`,
			"HTTPRoute demo/bad: spec.rules[0].backendRefs: every backendRef has weight 0: nothing would be sent anywhere"},
		{"backend port missing on the Service", `
  - backendRefs: [{name: web, port: 9999}]`,
			"HTTPRoute demo/bad: spec.rules[0].backendRefs[0].port: Service demo/web has no port 9999"},
		{"cross-namespace backend", `
  - backendRefs: [{name: web, namespace: other, port: 8080}]`,
			"HTTPRoute demo/bad: spec.rules[0].backendRefs[0].namespace: Service other/web is in another namespace"},
		{"unknown mirror backend", `
  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: ghost}}}]`,
			"HTTPRoute demo/bad: spec.rules[0].filters[0].requestMirror.backendRef: Service demo/ghost not found"},
		{"percent and fraction", `
  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web}, percent: 5, fraction: {numerator: 1}}}]`,
			"HTTPRoute demo/bad: spec.rules[0].filters[0].requestMirror: set percent or fraction, not both"},
		{"unsupported filter", `
  - filters: [{type: CORS, cors: {maxAge: 5}}]`,
			"HTTPRoute demo/bad: spec.rules[0].filters[0].type: filter CORS is not supported"},
		{"prefix rewrite without prefix match", `
  - matches: [{path: {type: Exact, value: /a}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]`,
			"HTTPRoute demo/bad: spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch: needs every match of the rule to be a PathPrefix path match"},
		{"redirect with backends", `
  - filters: [{type: RequestRedirect, requestRedirect: {hostname: x.example}}]
    backendRefs: [{name: web, port: 8080}]`,
			"HTTPRoute demo/bad: spec.rules[0].backendRefs: a rule with a RequestRedirect answers itself"},
		{"backendRequest over request", `
  - timeouts: {request: 1s, backendRequest: 2s}`,
			"HTTPRoute demo/bad: spec.rules[0].timeouts.backendRequest: 2s is longer than timeouts.request 1s"},
		{"session persistence", `
  - sessionPersistence: {sessionName: s}`,
			"HTTPRoute demo/bad: spec.rules[0].sessionPersistence: is not supported"},
		{"bad duration", `
  - timeouts: {request: soon}`,
			"HTTPRoute demo/bad: spec.rules[0].timeouts.request: \"soon\" is not a duration"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httpRoute(t, "metadata: {name: bad}\nspec:"+parentWeb+"\n  rules:"+c.rules+"\n")
			comp := NewCompiler().Update(inputs{services: []*model.Service{svc("web", "", nil)}, http: []*gatewayv1.HTTPRoute{r}}.model())
			if len(comp.Errors) != 1 || !strings.HasPrefix(comp.Errors[0].Error(), c.want) {
				t.Errorf("errors:\n%s\nwant one starting\n%s", errorTexts(comp.Errors), c.want)
			}
			if p := comp.Policy(webDst); len(p.Routes) != 0 {
				t.Errorf("an invalid route with no good version must not serve: %+v", p.Routes)
			}
		})
	}
}

func TestValidationOfGRPCRoutesAndParents(t *testing.T) {
	g := grpcRoute(t, `
metadata: {name: rpc}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 8080}, {group: "", kind: Service, name: missing}]
  rules:
  - matches: [{method: {type: RegularExpression, service: "a(", method: M}}]
    backendRefs: [{name: web, port: 8080, weight: 0}]
`)
	comp := NewCompiler().Update(inputs{services: []*model.Service{svc("web", "", nil)}, grpc: []*gatewayv1.GRPCRoute{g}}.model())
	want := []string{
		"GRPCRoute demo/rpc: spec.parentRefs[1]: Service demo/missing not found",
		"GRPCRoute demo/rpc: spec.rules[0].matches[0].method.service: bad regular expression \"a(\"",
		"GRPCRoute demo/rpc: spec.rules[0].backendRefs: every backendRef has weight 0",
	}
	got := errorTexts(comp.Errors)
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("errors:\n%s\nlack %q", got, w)
		}
	}
}

func TestAnnotationScopeAndTypos(t *testing.T) {
	web := svc("web", "", map[string]string{AnnFaultAbortPercent: "5", "skein.io/retry-limt": "3", "skein.io/inject": "enabled"})
	r := httpRoute(t, "metadata: {name: r, annotations: {skein.io/retry-budget-ratio: '0.1', skein.io/fault-abort-percent: '5'}}\nspec:"+parentWeb+"\n  rules: [{}]\n")
	comp := NewCompiler().Update(inputs{services: []*model.Service{web}, http: []*gatewayv1.HTTPRoute{r}}.model())
	got := errorTexts(comp.Errors)
	for _, w := range []string{
		"Service demo/web: annotation skein.io/fault-abort-percent: applies to an HTTPRoute or GRPCRoute, not a Service",
		"Service demo/web: annotation skein.io/retry-limt: unknown annotation",
		"HTTPRoute demo/r: annotation skein.io/retry-budget-ratio: applies to a Service, not a route",
		"HTTPRoute demo/r: annotation skein.io/fault-abort-percent: needs skein.io/fault-abort-http or skein.io/fault-abort-grpc",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("errors:\n%s\nlack %q", got, w)
		}
	}
	if strings.Contains(got, "inject") {
		t.Errorf("skein.io/inject is not a policy annotation: %s", got)
	}
}

// TestLastGoodVersionKeepsServing: a route that turns invalid keeps its last
// good version; so does a Service's annotations; a deleted route goes.
func TestLastGoodVersionKeepsServing(t *testing.T) {
	services := []*model.Service{svc("web", "", nil), svc("web-v1", "", nil), svc("web-v2", "", nil)}
	good := httpRoute(t, `
metadata: {name: split}
spec:`+parentWeb+`
  rules:
  - backendRefs: [{name: web-v1, port: 8080, weight: 90}, {name: web-v2, port: 8080, weight: 10}]
`)
	c := NewCompiler()
	first := c.Update(inputs{services: services, http: []*gatewayv1.HTTPRoute{good}}.model())
	if len(first.Errors) != 0 {
		t.Fatal(errorTexts(first.Errors))
	}

	bad := good.DeepCopy()
	zero := int32(0)
	bad.Spec.Rules[0].BackendRefs[0].Weight = &zero
	bad.Spec.Rules[0].BackendRefs[1].Weight = &zero
	webBad := svc("web", "", map[string]string{AnnRetryLimit: "x"})
	prevDefaults := svc("web", "", map[string]string{AnnTimeoutRequest: "2s"})
	c.Update(inputs{services: []*model.Service{prevDefaults, services[1], services[2]}, http: []*gatewayv1.HTTPRoute{good}}.model())
	second := c.Update(inputs{services: []*model.Service{webBad, services[1], services[2]}, http: []*gatewayv1.HTTPRoute{bad}}.model())
	if len(second.Errors) != 2 {
		t.Fatalf("want the bad route and the bad annotation reported: %s", errorTexts(second.Errors))
	}
	p := second.Policy(webDst)
	if len(p.Routes) != 1 || strings.Join(backends(p.Routes[0].Rules[0]), ",") != "web-v1.demo.svc.cluster.local:8080=90,web-v2.demo.svc.cluster.local:8080=10" {
		t.Errorf("the last good split must keep serving: %+v", p.Routes)
	}
	if p.Defaults.Timeouts.Request != 2_000_000_000 {
		t.Errorf("the Service's last good annotations must keep serving: %+v", p.Defaults.Timeouts)
	}

	// Fixed, then deleted.
	fixed := good.DeepCopy()
	fixed.Spec.Rules[0].BackendRefs[1].Weight = &zero
	third := c.Update(inputs{services: services, http: []*gatewayv1.HTTPRoute{fixed}}.model())
	if got := backends(third.Policy(webDst).Routes[0].Rules[0]); got[1] != "web-v2.demo.svc.cluster.local:8080=0" {
		t.Errorf("the fixed route must replace the last good one: %q", got)
	}
	gone := c.Update(inputs{services: services}.model())
	if p := gone.Policy(webDst); len(p.Routes) != 0 {
		t.Errorf("a deleted route must go: %+v", p.Routes)
	}
	// A route invalid from the start never serves; once deleted and
	// re-created invalid it has no last good version either.
	again := c.Update(inputs{services: services, http: []*gatewayv1.HTTPRoute{bad}}.model())
	if p := again.Policy(webDst); len(p.Routes) != 0 || len(again.Errors) != 1 {
		t.Errorf("re-created invalid route: routes %+v, errors %s", p.Routes, errorTexts(again.Errors))
	}
}
