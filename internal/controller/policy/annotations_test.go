package policy

import (
	"slices"
	"strings"
	"testing"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/routes"
)

// TestAnnotations checks each annotation lands in its field, and that a bad
// value is reported with the object and the annotation. base are
// annotations set beside the one under test (on the same object) that it
// needs to take effect.
func TestAnnotations(t *testing.T) {
	retryOn := map[string]string{AnnRetryHTTP: "5xx"}
	cases := []struct {
		key, value string
		onRoute    bool
		base       map[string]string
		check      func(p *routes.Policy, r routes.Rule) bool
		bad        string // a value that must be refused
	}{
		{AnnTimeoutRequest, "2s", false, nil, func(p *routes.Policy, r routes.Rule) bool {
			return p.Defaults.Timeouts.Request == 2*time.Second && r.Timeouts.Request == 2*time.Second
		}, "soon"},
		{AnnTimeoutResponseHeader, "300ms", true, nil, func(p *routes.Policy, r routes.Rule) bool { return r.Timeouts.ResponseHeader == 300*time.Millisecond }, "-1s"},
		{AnnTimeoutIdle, "1m", false, nil, func(p *routes.Policy, r routes.Rule) bool { return p.Defaults.Timeouts.Idle == time.Minute }, "1 minute"},
		{AnnRetryHTTP, "5xx,gateway-error,reset,429,500-504", true, nil, func(p *routes.Policy, r routes.Rule) bool {
			return r.Retry != nil && r.Retry.GatewayError && r.Retry.Reset && r.Retry.Limit == 2 && !r.Retry.NonIdempotent &&
				slices.Equal(r.Retry.HTTP, []routes.StatusRange{{Min: 500, Max: 599}, {Min: 429, Max: 429}, {Min: 500, Max: 504}}) &&
				r.Retry.BackoffBase == 25*time.Millisecond && r.Retry.BackoffMax == 250*time.Millisecond && p.Defaults.Retry == nil
		}, "504-500"},
		{AnnRetryGRPC, "unavailable,resource-exhausted,deadline-exceeded,internal", false, nil, func(p *routes.Policy, r routes.Rule) bool {
			return p.Defaults.Retry != nil && slices.Equal(p.Defaults.Retry.GRPC, []int{14, 8, 4, 13})
		}, "Unavailable!"},
		{AnnRetryLimit, "4", true, retryOn, func(p *routes.Policy, r routes.Rule) bool { return r.Retry.Limit == 4 }, "x"},
		{AnnRetryLimit, "4", true, nil, func(p *routes.Policy, r routes.Rule) bool { return r.Retry == nil }, "x"}, // no condition: retries off
		{AnnRetryBackoff, "10ms", false, retryOn, func(p *routes.Policy, r routes.Rule) bool {
			return p.Defaults.Retry.BackoffBase == 10*time.Millisecond && p.Defaults.Retry.BackoffMax == 100*time.Millisecond
		}, "10ms-1ms"},
		{AnnRetryBackoff, "10ms-1s", false, retryOn, func(p *routes.Policy, r routes.Rule) bool { return p.Defaults.Retry.BackoffMax == time.Second }, "fast"},
		{AnnRetryNonIdempotent, "true", false, retryOn, func(p *routes.Policy, r routes.Rule) bool { return p.Defaults.Retry.NonIdempotent }, "yes"},
		{AnnRetryTimeout, "1s", true, retryOn, func(p *routes.Policy, r routes.Rule) bool { return r.Retry.PerTry == time.Second }, "1"},
		{AnnBudgetRatio, "0.5", false, nil, func(p *routes.Policy, r routes.Rule) bool {
			return p.Budget.Ratio == 0.5 && p.Budget.MinPerSecond == 10
		}, "1.5"},
		{AnnBudgetMinPerSecond, "3", false, nil, func(p *routes.Policy, r routes.Rule) bool { return p.Budget.MinPerSecond == 3 }, "-3"},
		{AnnBudgetTTL, "20s", false, nil, func(p *routes.Policy, r routes.Rule) bool { return p.Budget.TTL == 20*time.Second }, "0s"},
		{AnnBreakerConsecutive, "0", false, nil, func(p *routes.Policy, r routes.Rule) bool { return p.Defaults.Breaker.Consecutive == 0 }, "seven"},
		{AnnBreakerSuccessRate, "0.8", true, nil, func(p *routes.Policy, r routes.Rule) bool {
			return r.Breaker.SuccessRate == 0.8 && r.Breaker.Consecutive == 7 && r.Breaker.MinRequests == 20 && r.Breaker.MaxEjectedPercent == 50 &&
				p.Defaults.Breaker.SuccessRate == 0
		}, "80%"},
		{AnnBreakerWindow, "1m", false, nil, func(p *routes.Policy, r routes.Rule) bool { return p.Defaults.Breaker.Window == time.Minute }, "0s"},
		{AnnBreakerMinRequests, "5", false, nil, func(p *routes.Policy, r routes.Rule) bool { return p.Defaults.Breaker.MinRequests == 5 }, "many"},
		{AnnBreakerMinPenalty, "2s", false, nil, func(p *routes.Policy, r routes.Rule) bool { return p.Defaults.Breaker.MinPenalty == 2*time.Second }, "x"},
		{AnnBreakerMaxPenalty, "5m", false, nil, func(p *routes.Policy, r routes.Rule) bool { return p.Defaults.Breaker.MaxPenalty == 5*time.Minute }, "x"},
		{AnnBreakerJitter, "0.3", false, nil, func(p *routes.Policy, r routes.Rule) bool { return p.Defaults.Breaker.Jitter == 0.3 }, "2"},
		{AnnBreakerFailure, "5xx,429,grpc:unavailable", false, nil, func(p *routes.Policy, r routes.Rule) bool {
			b := p.Defaults.Breaker
			return slices.Equal(b.FailureHTTP, []routes.StatusRange{{Min: 500, Max: 599}, {Min: 429, Max: 429}}) && slices.Equal(b.FailureGRPC, []int{14})
		}, "grpc:nope"},
		{AnnBreakerMaxEjectedPercent, "30", false, nil, func(p *routes.Policy, r routes.Rule) bool { return p.Defaults.Breaker.MaxEjectedPercent == 30 }, "101"},
		{AnnFaultAbortHTTP, "503", true, map[string]string{AnnFaultAbortPercent: "10"}, func(p *routes.Policy, r routes.Rule) bool {
			return r.Fault != nil && r.Fault.AbortHTTP == 503 && r.Fault.AbortPercent == 10
		}, "600"},
		{AnnFaultAbortGRPC, "unavailable", true, map[string]string{AnnFaultAbortPercent: "10"}, func(p *routes.Policy, r routes.Rule) bool {
			return r.Fault != nil && r.Fault.AbortGRPC == 14
		}, "ok"},
		{AnnFaultAbortPercent, "12.5", true, map[string]string{AnnFaultAbortHTTP: "500"}, func(p *routes.Policy, r routes.Rule) bool {
			return r.Fault != nil && r.Fault.AbortPercent == 12.5
		}, "101"},
		{AnnFaultDelay, "1s", true, map[string]string{AnnFaultDelayPercent: "50"}, func(p *routes.Policy, r routes.Rule) bool {
			return r.Fault != nil && r.Fault.Delay == time.Second && r.Fault.DelayPercent == 50 && r.Fault.AbortPercent == 0
		}, "x"},
		{AnnFaultDelay, "1s", true, nil, func(p *routes.Policy, r routes.Rule) bool { return r.Fault == nil }, "x"}, // no percent: nothing injected
		{AnnFaultDelayPercent, "5", true, map[string]string{AnnFaultDelay: "1s"}, func(p *routes.Policy, r routes.Rule) bool {
			return r.Fault != nil && r.Fault.DelayPercent == 5
		}, "-5"},
		{AnnMirrorCompareHeaders, "X-Version, content-type", true, nil, func(p *routes.Policy, r routes.Rule) bool {
			return slices.Equal(r.Mirrors[0].CompareHeaders, []string{"x-version", "content-type"})
		}, "a:b"},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			run := func(value string) (*routes.Policy, []*Error) {
				web := svc("web", "", nil)
				r := httpRoute(t, "metadata: {name: r}\nspec:"+parentWeb+"\n  rules: [{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web}}}]}]\n")
				ann := map[string]string{c.key: value}
				for k, v := range c.base {
					ann[k] = v
				}
				if c.onRoute {
					r.Annotations = ann
				} else {
					web.Annotations = ann
				}
				comp := NewCompiler().Update(inputs{services: []*model.Service{web}, http: []*gatewayv1.HTTPRoute{r}}.model())
				return comp.Policy(webDst), comp.Errors
			}
			p, errs := run(c.value)
			if len(errs) > 0 {
				t.Fatalf("errors: %s", errorTexts(errs))
			}
			if !c.check(p, p.Routes[0].Rules[0]) {
				t.Errorf("%s: %q not applied: defaults %+v, rule %+v", c.key, c.value, p.Defaults, p.Routes[0].Rules[0])
			}
			_, errs = run(c.bad)
			kind := "Service demo/web"
			if c.onRoute {
				kind = "HTTPRoute demo/r"
			}
			want := kind + ": annotation " + c.key + ": "
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), want) || errs[0].Field != "metadata.annotations["+c.key+"]" {
				t.Errorf("bad %q: errors %q, want one starting %q", c.bad, errorTexts(errs), want)
			}
		})
	}
}

func TestFaultAnnotations(t *testing.T) {
	r := httpRoute(t, `
metadata:
  name: r
  annotations:
    skein.io/fault-abort-http: "503"
    skein.io/fault-abort-grpc: unavailable
    skein.io/fault-abort-percent: "10"
    skein.io/fault-delay: 100ms
    skein.io/fault-delay-percent: "2.5"
spec:`+parentWeb+`
  rules: [{}]
`)
	p := policyOf(t, inputs{services: []*model.Service{svc("web", "", nil)}, http: []*gatewayv1.HTTPRoute{r}})
	want := routes.Fault{AbortPercent: 10, AbortHTTP: 503, AbortGRPC: 14, DelayPercent: 2.5, Delay: 100 * time.Millisecond}
	if f := p.Routes[0].Rules[0].Fault; f == nil || *f != want {
		t.Errorf("fault = %+v, want %+v", f, want)
	}
}
