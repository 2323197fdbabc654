package policy

import (
	"fmt"
	"slices"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skeinmesh/skein/internal/routes"
)

// httpRoute compiles an HTTPRoute, or says everything wrong with it. A
// route attached to no Service is (nil, nil).
func (e *compileEnv) httpRoute(hr *gatewayv1.HTTPRoute) (*compiledRoute, []*Error) {
	ref := objectRef{"HTTPRoute", hr.Namespace, hr.Name}
	r, errs := e.routeBase(ref, hr.CreationTimestamp.Time, hr.Annotations, hr.Spec.ParentRefs)
	if r == nil {
		return nil, nil
	}
	// spec.hostnames is for Gateway parents: on a Service the Service is
	// the host (GAMMA), so it is ignored here.
	for i := range hr.Spec.Rules {
		cr, ruleErrs := e.httpRule(ref, fmt.Sprintf("spec.rules[%d]", i), &hr.Spec.Rules[i], r.settings)
		errs = append(errs, ruleErrs...)
		r.rules = append(r.rules, cr)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

func (e *compileEnv) httpRule(ref objectRef, field string, hr *gatewayv1.HTTPRouteRule, set settings) (compiledRule, []*Error) {
	var cr compiledRule
	var errs []*Error
	fail := func(err *Error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for i, m := range hr.Matches {
		match, prec, err := httpMatch(ref, fmt.Sprintf("%s.matches[%d]", field, i), m)
		fail(err)
		cr.rule.Matches = append(cr.rule.Matches, match)
		cr.precedence = append(cr.precedence, prec)
	}
	if len(hr.Matches) == 0 {
		cr.precedence = []precedence{{path: pathPrefixRank, pathLen: 1}}
	}
	if hr.SessionPersistence != nil {
		fail(ref.fail(field+".sessionPersistence", "is not supported: requests are balanced one by one"))
	}
	seen := map[gatewayv1.HTTPRouteFilterType]bool{}
	for i, f := range hr.Filters {
		ff := fmt.Sprintf("%s.filters[%d]", field, i)
		if seen[f.Type] && f.Type != gatewayv1.HTTPRouteFilterRequestMirror {
			fail(ref.fail(ff+".type", "%s appears twice in one rule", f.Type))
			continue
		}
		seen[f.Type] = true
		var err *Error
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			cr.rule.RequestHeaders, err = headerModifier(ref, ff+".requestHeaderModifier", f.RequestHeaderModifier)
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			cr.rule.ResponseHeaders, err = headerModifier(ref, ff+".responseHeaderModifier", f.ResponseHeaderModifier)
		case gatewayv1.HTTPRouteFilterRequestRedirect:
			cr.rule.Redirect, err = redirect(ref, ff+".requestRedirect", f.RequestRedirect, hr.Matches)
		case gatewayv1.HTTPRouteFilterURLRewrite:
			cr.rule.Rewrite, err = rewrite(ref, ff+".urlRewrite", f.URLRewrite, hr.Matches)
		case gatewayv1.HTTPRouteFilterRequestMirror:
			var m routes.Mirror
			if m, err = e.mirror(ref, ff+".requestMirror", f.RequestMirror); err == nil {
				cr.rule.Mirrors = append(cr.rule.Mirrors, m)
			}
		default:
			err = ref.fail(ff+".type", "filter %s is not supported (supported: RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror)", f.Type)
		}
		fail(err)
	}
	if seen[gatewayv1.HTTPRouteFilterRequestRedirect] && seen[gatewayv1.HTTPRouteFilterURLRewrite] {
		fail(ref.fail(field+".filters", "RequestRedirect and URLRewrite cannot be in the same rule"))
	}
	if seen[gatewayv1.HTTPRouteFilterRequestRedirect] && len(hr.BackendRefs) > 0 {
		fail(ref.fail(field+".backendRefs", "a rule with a RequestRedirect answers itself: it has no backendRefs"))
	}
	badBackend := false
	for i, b := range hr.BackendRefs {
		bf := fmt.Sprintf("%s.backendRefs[%d]", field, i)
		if len(b.Filters) > 0 {
			fail(ref.fail(bf+".filters", "filters on a backendRef are not supported: put them on the rule"))
			badBackend = true
			continue
		}
		backend, err := e.weighted(ref, bf, b.BackendRef)
		if err != nil {
			fail(err)
			badBackend = true
			continue
		}
		cr.rule.Backends = append(cr.rule.Backends, backend)
	}
	if !badBackend {
		fail(checkWeights(ref, field+".backendRefs", cr.rule.Backends))
	}
	if t := hr.Timeouts; t != nil {
		var err *Error
		cr.request, err = gatewayDuration(ref, field+".timeouts.request", t.Request)
		fail(err)
		cr.backendRequest, err = gatewayDuration(ref, field+".timeouts.backendRequest", t.BackendRequest)
		fail(err)
		if cr.request != nil && cr.backendRequest != nil && *cr.request != 0 && *cr.backendRequest > *cr.request {
			fail(ref.fail(field+".timeouts.backendRequest", "%s is longer than timeouts.request %s", *t.BackendRequest, *t.Request))
		}
	}
	if rt := hr.Retry; rt != nil {
		gr := &gatewayRetry{attempts: rt.Attempts}
		for i, c := range rt.Codes {
			if c < 400 || c > 599 {
				fail(ref.fail(fmt.Sprintf("%s.retry.codes[%d]", field, i), "%d is not a status to retry (400-599)", c))
			}
			gr.codes = append(gr.codes, routes.StatusRange{Min: int(c), Max: int(c)})
		}
		if rt.Attempts != nil && *rt.Attempts < 0 {
			fail(ref.fail(field+".retry.attempts", "%d is negative", *rt.Attempts))
		}
		var err *Error
		gr.backoff, err = gatewayDuration(ref, field+".retry.backoff", rt.Backoff)
		fail(err)
		cr.retry = gr
	}
	cr.rule.Fault = set.fault()
	return cr, errs
}

// httpMatch compiles one HTTPRouteMatch and says where it ranks.
func httpMatch(ref objectRef, field string, m gatewayv1.HTTPRouteMatch) (routes.Match, precedence, *Error) {
	var out routes.Match
	prec := precedence{path: pathPrefixRank, pathLen: 1} // no path: PathPrefix "/"
	if p := m.Path; p != nil {
		typ := gatewayv1.PathMatchPathPrefix
		if p.Type != nil {
			typ = *p.Type
		}
		value := "/"
		if p.Value != nil {
			value = *p.Value
		}
		pm := &routes.PathMatch{Value: value}
		switch typ {
		case gatewayv1.PathMatchExact, gatewayv1.PathMatchPathPrefix:
			if !strings.HasPrefix(value, "/") {
				return out, prec, ref.fail(field+".path.value", "%q does not start with /", value)
			}
			pm.Type, prec.path = routes.PathExact, pathExactRank
			if typ == gatewayv1.PathMatchPathPrefix {
				pm.Type, prec.path = routes.PathPrefix, pathPrefixRank
			}
		case gatewayv1.PathMatchRegularExpression:
			re, err := compileRegex(ref, field+".path.value", value)
			if err != nil {
				return out, prec, err
			}
			pm.Type, pm.Regex, prec.path = routes.PathRegex, re, pathRegexRank
		default:
			return out, prec, ref.fail(field+".path.type", "%q is not a path match type (Exact, PathPrefix, RegularExpression)", typ)
		}
		prec.pathLen = len(value)
		out.Path = pm
	}
	if m.Method != nil {
		if !slices.Contains(knownMethods, string(*m.Method)) {
			return out, prec, ref.fail(field+".method", "%q is not an HTTP method", *m.Method)
		}
		out.Method, prec.method = string(*m.Method), true
	}
	seen := map[string]bool{}
	for i, h := range m.Headers {
		// Of several matches of one header, the first counts.
		if seen[strings.ToLower(string(h.Name))] {
			continue
		}
		seen[strings.ToLower(string(h.Name))] = true
		vm, err := valueMatch(ref, fmt.Sprintf("%s.headers[%d]", field, i), string(h.Name), h.Value, (*string)(h.Type), true)
		if err != nil {
			return out, prec, err
		}
		out.Headers = append(out.Headers, vm)
	}
	for i, q := range m.QueryParams {
		vm, err := valueMatch(ref, fmt.Sprintf("%s.queryParams[%d]", field, i), string(q.Name), q.Value, (*string)(q.Type), false)
		if err != nil {
			return out, prec, err
		}
		out.QueryParams = append(out.QueryParams, vm)
	}
	prec.headers, prec.queryParams = len(out.Headers), len(out.QueryParams)
	return out, prec, nil
}

// valueMatch compiles a header or query parameter match (Exact or
// RegularExpression).
func valueMatch(ref objectRef, field, name, value string, typ *string, header bool) (routes.ValueMatch, *Error) {
	if header {
		if err := checkHeaderName(name); err != nil {
			return routes.ValueMatch{}, ref.fail(field+".name", "%v", err)
		}
	} else if name == "" {
		return routes.ValueMatch{}, ref.fail(field+".name", "is empty")
	}
	vm := routes.ValueMatch{Name: name, Value: value}
	switch {
	case typ == nil || *typ == "Exact":
	case *typ == "RegularExpression":
		re, err := compileRegex(ref, field+".value", value)
		if err != nil {
			return vm, err
		}
		vm.Regex = re
	default:
		return vm, ref.fail(field+".type", "%q is not a match type (Exact, RegularExpression)", *typ)
	}
	return vm, nil
}

func pathModifier(ref objectRef, field string, p *gatewayv1.HTTPPathModifier, matches []gatewayv1.HTTPRouteMatch) (*routes.PathRewrite, *Error) {
	if p == nil {
		return nil, nil
	}
	switch p.Type {
	case gatewayv1.FullPathHTTPPathModifier:
		if p.ReplaceFullPath == nil || !strings.HasPrefix(*p.ReplaceFullPath, "/") {
			return nil, ref.fail(field+".replaceFullPath", "must be a path starting with /")
		}
		return &routes.PathRewrite{Full: *p.ReplaceFullPath}, nil
	case gatewayv1.PrefixMatchHTTPPathModifier:
		if p.ReplacePrefixMatch == nil {
			return nil, ref.fail(field+".replacePrefixMatch", "is required with type ReplacePrefixMatch")
		}
		// It replaces what a PathPrefix match matched: every match must be
		// one.
		if len(matches) == 0 || slices.ContainsFunc(matches, func(m gatewayv1.HTTPRouteMatch) bool {
			return m.Path == nil || m.Path.Type == nil || *m.Path.Type != gatewayv1.PathMatchPathPrefix
		}) {
			return nil, ref.fail(field+".replacePrefixMatch", "needs every match of the rule to be a PathPrefix path match")
		}
		return &routes.PathRewrite{Prefix: *p.ReplacePrefixMatch, IsPrefix: true}, nil
	}
	return nil, ref.fail(field+".type", "%q is not a path modifier (ReplaceFullPath, ReplacePrefixMatch)", p.Type)
}

func redirect(ref objectRef, field string, f *gatewayv1.HTTPRequestRedirectFilter, matches []gatewayv1.HTTPRouteMatch) (*routes.Redirect, *Error) {
	if f == nil {
		return nil, ref.fail(field, "is missing")
	}
	out := &routes.Redirect{StatusCode: 302}
	if f.Scheme != nil {
		if *f.Scheme != "http" && *f.Scheme != "https" {
			return nil, ref.fail(field+".scheme", "%q is neither http nor https", *f.Scheme)
		}
		out.Scheme = *f.Scheme
	}
	if f.Hostname != nil {
		out.Hostname = string(*f.Hostname)
	}
	if f.Port != nil {
		if *f.Port < 1 || *f.Port > 65535 {
			return nil, ref.fail(field+".port", "%d is not a port number (1-65535)", *f.Port)
		}
		out.Port = uint16(*f.Port)
	}
	if f.StatusCode != nil {
		if !slices.Contains([]int{301, 302, 303, 307, 308}, *f.StatusCode) {
			return nil, ref.fail(field+".statusCode", "%d is not a redirect status (301, 302, 303, 307, 308)", *f.StatusCode)
		}
		out.StatusCode = *f.StatusCode
	}
	var err *Error
	out.Path, err = pathModifier(ref, field+".path", f.Path, matches)
	return out, err
}

func rewrite(ref objectRef, field string, f *gatewayv1.HTTPURLRewriteFilter, matches []gatewayv1.HTTPRouteMatch) (*routes.Rewrite, *Error) {
	if f == nil {
		return nil, ref.fail(field, "is missing")
	}
	out := &routes.Rewrite{}
	if f.Hostname != nil {
		out.Hostname = string(*f.Hostname)
	}
	var err *Error
	out.Path, err = pathModifier(ref, field+".path", f.Path, matches)
	return out, err
}
