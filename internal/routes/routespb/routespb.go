// Package routespb converts the outbound policy between its Go form
// (internal/routes) and its wire form (proto/policy), both ways, in one
// place. The controller encodes, the proxy decodes; neither needs more.
package routespb

import (
	"fmt"
	"regexp"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/skeinmesh/skein/internal/routes"
	policypb "github.com/skeinmesh/skein/proto/policy"
)

// ToProto encodes p; a nil p (no policy) is a message with exists false.
func ToProto(p *routes.Policy) *policypb.OutboundPolicy {
	if p == nil {
		return &policypb.OutboundPolicy{}
	}
	out := &policypb.OutboundPolicy{
		Exists:   true,
		Service:  p.Service,
		Port:     uint32(p.Port),
		Defaults: ruleToProto(&p.Defaults, nil),
		Budget: &policypb.Budget{
			Ratio:        p.Budget.Ratio,
			MinPerSecond: uint32(p.Budget.MinPerSecond),
			Ttl:          dur(p.Budget.TTL),
		},
	}
	for _, r := range p.Routes {
		pr := &policypb.Route{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
		for i := range r.Rules {
			pr.Rules = append(pr.Rules, ruleToProto(&r.Rules[i], p.Defaults.Breaker))
		}
		out.Routes = append(out.Routes, pr)
	}
	return out
}

// FromProto decodes m; a message with exists false is a nil policy. A rule
// that shares the Service's breaker gets the very pointer of
// Defaults.Breaker, as the controller made it.
func FromProto(m *policypb.OutboundPolicy) (*routes.Policy, error) {
	if !m.GetExists() {
		return nil, nil
	}
	p := &routes.Policy{Service: m.GetService(), Port: uint16(m.GetPort())}
	b := m.GetBudget()
	p.Budget = routes.Budget{Ratio: b.GetRatio(), MinPerSecond: int(b.GetMinPerSecond()), TTL: b.GetTtl().AsDuration()}
	defaults, err := ruleFromProto(m.GetDefaults(), nil)
	if err != nil {
		return nil, fmt.Errorf("defaults: %w", err)
	}
	p.Defaults = defaults
	for _, pr := range m.GetRoutes() {
		r := routes.Route{Kind: pr.GetKind(), Namespace: pr.GetNamespace(), Name: pr.GetName()}
		for i, prule := range pr.GetRules() {
			rule, err := ruleFromProto(prule, p.Defaults.Breaker)
			if err != nil {
				return nil, fmt.Errorf("route %s/%s rule %d: %w", r.Namespace, r.Name, i, err)
			}
			r.Rules = append(r.Rules, rule)
		}
		p.Routes = append(p.Routes, r)
	}
	return p, nil
}

func dur(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func ruleToProto(r *routes.Rule, serviceBreaker *routes.Breaker) *policypb.Rule {
	out := &policypb.Rule{
		RequestHeaders:  headersToProto(r.RequestHeaders),
		ResponseHeaders: headersToProto(r.ResponseHeaders),
		Timeouts: &policypb.Timeouts{
			Request:        dur(r.Timeouts.Request),
			BackendRequest: dur(r.Timeouts.BackendRequest),
			ResponseHeader: dur(r.Timeouts.ResponseHeader),
			Idle:           dur(r.Timeouts.Idle),
		},
	}
	out.Matches = MatchesToProto(r.Matches)
	if rd := r.Redirect; rd != nil {
		out.Redirect = &policypb.Redirect{Scheme: rd.Scheme, Hostname: rd.Hostname, Port: uint32(rd.Port), Path: pathRewriteToProto(rd.Path), StatusCode: uint32(rd.StatusCode)}
	}
	if rw := r.Rewrite; rw != nil {
		out.Rewrite = &policypb.Rewrite{Hostname: rw.Hostname, Path: pathRewriteToProto(rw.Path)}
	}
	for _, m := range r.Mirrors {
		out.Mirrors = append(out.Mirrors, &policypb.Mirror{Backend: backendToProto(m.Backend), Percent: m.Percent, CompareHeaders: m.CompareHeaders})
	}
	for _, b := range r.Backends {
		out.Backends = append(out.Backends, backendToProto(b))
	}
	if rt := r.Retry; rt != nil {
		out.Retry = &policypb.Retry{
			Limit: uint32(rt.Limit), Http: rangesToProto(rt.HTTP), GatewayError: rt.GatewayError, Reset_: rt.Reset,
			Grpc: intsToProto(rt.GRPC), PerTry: dur(rt.PerTry), BackoffBase: dur(rt.BackoffBase), BackoffMax: dur(rt.BackoffMax),
			NonIdempotent: rt.NonIdempotent,
		}
	}
	if r.Breaker != nil && r.Breaker == serviceBreaker {
		out.ServiceBreaker = true
	} else if b := r.Breaker; b != nil {
		out.Breaker = &policypb.Breaker{
			Consecutive: uint32(b.Consecutive), SuccessRate: b.SuccessRate, Window: dur(b.Window), MinRequests: uint32(b.MinRequests),
			MinPenalty: dur(b.MinPenalty), MaxPenalty: dur(b.MaxPenalty), Jitter: b.Jitter,
			FailureHttp: rangesToProto(b.FailureHTTP), FailureGrpc: intsToProto(b.FailureGRPC), MaxEjectedPercent: uint32(b.MaxEjectedPercent),
		}
	}
	if f := r.Fault; f != nil {
		out.Fault = &policypb.Fault{AbortPercent: f.AbortPercent, AbortHttp: uint32(f.AbortHTTP), AbortGrpc: uint32(f.AbortGRPC), DelayPercent: f.DelayPercent, Delay: dur(f.Delay)}
	}
	return out
}

func ruleFromProto(m *policypb.Rule, serviceBreaker *routes.Breaker) (routes.Rule, error) {
	var out routes.Rule
	var err error
	if out.Matches, err = MatchesFromProto(m.GetMatches()); err != nil {
		return out, err
	}
	out.RequestHeaders = headersFromProto(m.GetRequestHeaders())
	out.ResponseHeaders = headersFromProto(m.GetResponseHeaders())
	if rd := m.GetRedirect(); rd != nil {
		out.Redirect = &routes.Redirect{Scheme: rd.GetScheme(), Hostname: rd.GetHostname(), Port: uint16(rd.GetPort()),
			Path: pathRewriteFromProto(rd.GetPath()), StatusCode: int(rd.GetStatusCode())}
	}
	if rw := m.GetRewrite(); rw != nil {
		out.Rewrite = &routes.Rewrite{Hostname: rw.GetHostname(), Path: pathRewriteFromProto(rw.GetPath())}
	}
	for _, pm := range m.GetMirrors() {
		out.Mirrors = append(out.Mirrors, routes.Mirror{Backend: backendFromProto(pm.GetBackend()), Percent: pm.GetPercent(), CompareHeaders: pm.GetCompareHeaders()})
	}
	for _, b := range m.GetBackends() {
		out.Backends = append(out.Backends, backendFromProto(b))
	}
	t := m.GetTimeouts()
	out.Timeouts = routes.Timeouts{Request: t.GetRequest().AsDuration(), BackendRequest: t.GetBackendRequest().AsDuration(),
		ResponseHeader: t.GetResponseHeader().AsDuration(), Idle: t.GetIdle().AsDuration()}
	if rt := m.GetRetry(); rt != nil {
		out.Retry = &routes.Retry{
			Limit: int(rt.GetLimit()), HTTP: rangesFromProto(rt.GetHttp()), GatewayError: rt.GetGatewayError(), Reset: rt.GetReset_(),
			GRPC: intsFromProto(rt.GetGrpc()), PerTry: rt.GetPerTry().AsDuration(), BackoffBase: rt.GetBackoffBase().AsDuration(),
			BackoffMax: rt.GetBackoffMax().AsDuration(), NonIdempotent: rt.GetNonIdempotent(),
		}
	}
	if m.GetServiceBreaker() {
		out.Breaker = serviceBreaker
	} else if b := m.GetBreaker(); b != nil {
		out.Breaker = &routes.Breaker{
			Consecutive: int(b.GetConsecutive()), SuccessRate: b.GetSuccessRate(), Window: b.GetWindow().AsDuration(),
			MinRequests: int(b.GetMinRequests()), MinPenalty: b.GetMinPenalty().AsDuration(), MaxPenalty: b.GetMaxPenalty().AsDuration(),
			Jitter: b.GetJitter(), FailureHTTP: rangesFromProto(b.GetFailureHttp()), FailureGRPC: intsFromProto(b.GetFailureGrpc()),
			MaxEjectedPercent: int(b.GetMaxEjectedPercent()),
		}
	}
	if f := m.GetFault(); f != nil {
		out.Fault = &routes.Fault{AbortPercent: f.GetAbortPercent(), AbortHTTP: int(f.GetAbortHttp()), AbortGRPC: int(f.GetAbortGrpc()),
			DelayPercent: f.GetDelayPercent(), Delay: f.GetDelay().AsDuration()}
	}
	return out, nil
}

func regexString(re *regexp.Regexp) string {
	if re == nil {
		return ""
	}
	return re.String()
}

// compile compiles an expression the controller anchored already; an
// empty one is refused, since it would match only empty values by accident.
func compile(expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, fmt.Errorf("regular expression missing")
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("regular expression %q: %w", expr, err)
	}
	return re, nil
}

func valuesToProto(vs []routes.ValueMatch) []*policypb.ValueMatch {
	var out []*policypb.ValueMatch
	for _, v := range vs {
		out = append(out, &policypb.ValueMatch{Name: v.Name, Value: v.Value, Regex: regexString(v.Regex)})
	}
	return out
}

func valuesFromProto(vs []*policypb.ValueMatch) ([]routes.ValueMatch, error) {
	var out []routes.ValueMatch
	for _, v := range vs {
		vm := routes.ValueMatch{Name: v.GetName(), Value: v.GetValue()}
		if v.GetRegex() != "" {
			re, err := compile(v.GetRegex())
			if err != nil {
				return nil, fmt.Errorf("%s: %w", vm.Name, err)
			}
			vm.Regex = re
		}
		out = append(out, vm)
	}
	return out, nil
}

func headersToProto(h *routes.HeaderModifier) *policypb.HeaderModifier {
	if h == nil {
		return nil
	}
	out := &policypb.HeaderModifier{Remove: h.Remove}
	for _, x := range h.Set {
		out.Set = append(out.Set, &policypb.Header{Name: x.Name, Value: x.Value})
	}
	for _, x := range h.Add {
		out.Add = append(out.Add, &policypb.Header{Name: x.Name, Value: x.Value})
	}
	return out
}

func headersFromProto(h *policypb.HeaderModifier) *routes.HeaderModifier {
	if h == nil {
		return nil
	}
	out := &routes.HeaderModifier{Remove: h.GetRemove()}
	for _, x := range h.GetSet() {
		out.Set = append(out.Set, routes.Header{Name: x.GetName(), Value: x.GetValue()})
	}
	for _, x := range h.GetAdd() {
		out.Add = append(out.Add, routes.Header{Name: x.GetName(), Value: x.GetValue()})
	}
	return out
}

func pathRewriteToProto(p *routes.PathRewrite) *policypb.PathRewrite {
	if p == nil {
		return nil
	}
	return &policypb.PathRewrite{Full: p.Full, Prefix: p.Prefix, IsPrefix: p.IsPrefix}
}

func pathRewriteFromProto(p *policypb.PathRewrite) *routes.PathRewrite {
	if p == nil {
		return nil
	}
	return &routes.PathRewrite{Full: p.GetFull(), Prefix: p.GetPrefix(), IsPrefix: p.GetIsPrefix()}
}

func backendToProto(b routes.Backend) *policypb.Backend {
	return &policypb.Backend{Authority: b.Authority, Service: b.Service, Port: uint32(b.Port), Weight: b.Weight}
}

func backendFromProto(b *policypb.Backend) routes.Backend {
	return routes.Backend{Authority: b.GetAuthority(), Service: b.GetService(), Port: uint16(b.GetPort()), Weight: b.GetWeight()}
}

func rangesToProto(rs []routes.StatusRange) []*policypb.StatusRange {
	var out []*policypb.StatusRange
	for _, r := range rs {
		out = append(out, &policypb.StatusRange{Min: uint32(r.Min), Max: uint32(r.Max)})
	}
	return out
}

func rangesFromProto(rs []*policypb.StatusRange) []routes.StatusRange {
	var out []routes.StatusRange
	for _, r := range rs {
		out = append(out, routes.StatusRange{Min: int(r.GetMin()), Max: int(r.GetMax())})
	}
	return out
}

func intsToProto(xs []int) []uint32 {
	var out []uint32
	for _, x := range xs {
		out = append(out, uint32(x))
	}
	return out
}

func intsFromProto(xs []uint32) []int {
	var out []int
	for _, x := range xs {
		out = append(out, int(x))
	}
	return out
}

// MatchesToProto converts route matches (shared with the inbound policy's
// per-route authorization, internal/authz/authzpb).
func MatchesToProto(ms []routes.Match) []*policypb.Match {
	var out []*policypb.Match
	for _, m := range ms {
		pm := &policypb.Match{Method: m.Method, Headers: valuesToProto(m.Headers), QueryParams: valuesToProto(m.QueryParams)}
		if m.Path != nil {
			pm.Path = &policypb.PathMatch{Type: string(m.Path.Type), Value: m.Path.Value, Regex: regexString(m.Path.Regex)}
		}
		out = append(out, pm)
	}
	return out
}

// MatchesFromProto converts matches back, compiling their regular
// expressions.
func MatchesFromProto(ms []*policypb.Match) ([]routes.Match, error) {
	var out []routes.Match
	for i, pm := range ms {
		match := routes.Match{Method: pm.GetMethod()}
		var err error
		if p := pm.GetPath(); p != nil {
			match.Path = &routes.PathMatch{Type: routes.PathMatchType(p.GetType()), Value: p.GetValue()}
			switch match.Path.Type {
			case routes.PathExact, routes.PathPrefix:
			case routes.PathRegex:
				if match.Path.Regex, err = compile(p.GetRegex()); err != nil {
					return nil, fmt.Errorf("match %d: path: %w", i, err)
				}
			default:
				return nil, fmt.Errorf("match %d: path match type %q unknown", i, p.GetType())
			}
		}
		if match.Headers, err = valuesFromProto(pm.GetHeaders()); err != nil {
			return nil, fmt.Errorf("match %d: header: %w", i, err)
		}
		if match.QueryParams, err = valuesFromProto(pm.GetQueryParams()); err != nil {
			return nil, fmt.Errorf("match %d: query parameter: %w", i, err)
		}
		out = append(out, match)
	}
	return out, nil
}
