package policy

import (
	"fmt"
	"regexp"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skeinmesh/skein/internal/routes"
)

// grpcContentType matches the content-type of a gRPC request: every rule of
// a GRPCRoute matches gRPC requests only, so a GRPCRoute and an HTTPRoute
// on the same Service port do not take each other's traffic.
var grpcContentType = routes.ValueMatch{Name: "content-type", Value: "application/grpc.*",
	Regex: regexp.MustCompile(`^(?:application/grpc.*)$`)}

// grpcRoute compiles a GRPCRoute. Service/method matches become path
// matches ("/pkg.Service/Method") with method POST.
func (e *compileEnv) grpcRoute(gr *gatewayv1.GRPCRoute) (*compiledRoute, []*Error) {
	ref := objectRef{"GRPCRoute", gr.Namespace, gr.Name}
	r, errs := e.routeBase(ref, gr.CreationTimestamp.Time, gr.Annotations, gr.Spec.ParentRefs)
	if r == nil {
		return nil, nil
	}
	r.grpc = true
	// spec.hostnames is for Gateway parents: on a Service the Service is
	// the host (GAMMA), so it is ignored here.
	for i := range gr.Spec.Rules {
		cr, ruleErrs := e.grpcRule(ref, fmt.Sprintf("spec.rules[%d]", i), &gr.Spec.Rules[i], r.settings)
		errs = append(errs, ruleErrs...)
		r.rules = append(r.rules, cr)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

func (e *compileEnv) grpcRule(ref objectRef, field string, gr *gatewayv1.GRPCRouteRule, set settings) (compiledRule, []*Error) {
	var cr compiledRule
	var errs []*Error
	fail := func(err *Error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for i, m := range gr.Matches {
		match, prec, err := grpcMatch(ref, fmt.Sprintf("%s.matches[%d]", field, i), m)
		fail(err)
		cr.rule.Matches = append(cr.rule.Matches, match)
		cr.precedence = append(cr.precedence, prec)
	}
	if len(gr.Matches) == 0 {
		cr.rule.Matches = []routes.Match{{Method: "POST", Headers: []routes.ValueMatch{grpcContentType}}}
		cr.precedence = []precedence{{grpc: true}}
	}
	if gr.SessionPersistence != nil {
		fail(ref.fail(field+".sessionPersistence", "is not supported: requests are balanced one by one"))
	}
	seen := map[gatewayv1.GRPCRouteFilterType]bool{}
	for i, f := range gr.Filters {
		ff := fmt.Sprintf("%s.filters[%d]", field, i)
		if seen[f.Type] && f.Type != gatewayv1.GRPCRouteFilterRequestMirror {
			fail(ref.fail(ff+".type", "%s appears twice in one rule", f.Type))
			continue
		}
		seen[f.Type] = true
		var err *Error
		switch f.Type {
		case gatewayv1.GRPCRouteFilterRequestHeaderModifier:
			cr.rule.RequestHeaders, err = headerModifier(ref, ff+".requestHeaderModifier", f.RequestHeaderModifier)
		case gatewayv1.GRPCRouteFilterResponseHeaderModifier:
			cr.rule.ResponseHeaders, err = headerModifier(ref, ff+".responseHeaderModifier", f.ResponseHeaderModifier)
		case gatewayv1.GRPCRouteFilterRequestMirror:
			var m routes.Mirror
			if m, err = e.mirror(ref, ff+".requestMirror", f.RequestMirror); err == nil {
				cr.rule.Mirrors = append(cr.rule.Mirrors, m)
			}
		default:
			err = ref.fail(ff+".type", "filter %s is not supported (supported: RequestHeaderModifier, ResponseHeaderModifier, RequestMirror)", f.Type)
		}
		fail(err)
	}
	badBackend := false
	for i, b := range gr.BackendRefs {
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
	cr.rule.Fault = set.fault()
	return cr, errs
}

// grpcMatch compiles a GRPCRouteMatch into a path match.
func grpcMatch(ref objectRef, field string, m gatewayv1.GRPCRouteMatch) (routes.Match, precedence, *Error) {
	out := routes.Match{Method: "POST", Headers: []routes.ValueMatch{grpcContentType}}
	prec := precedence{grpc: true}
	if mm := m.Method; mm != nil {
		service, method := deref(mm.Service), deref(mm.Method)
		if service == "" && method == "" {
			return out, prec, ref.fail(field+".method", "needs a service, a method or both")
		}
		prec.service, prec.grpcMethod = len(service), len(method)
		typ := gatewayv1.GRPCMethodMatchExact
		if mm.Type != nil {
			typ = *mm.Type
		}
		switch typ {
		case gatewayv1.GRPCMethodMatchExact:
			for _, part := range []struct{ name, value string }{{"service", service}, {"method", method}} {
				if strings.Contains(part.value, "/") {
					return out, prec, ref.fail(field+".method."+part.name, "%q contains /", part.value)
				}
			}
			switch {
			case method == "":
				out.Path = &routes.PathMatch{Type: routes.PathPrefix, Value: "/" + service}
			case service == "":
				expr := `[^/]+/` + regexp.QuoteMeta(method)
				out.Path = &routes.PathMatch{Type: routes.PathRegex, Value: "/" + expr, Regex: regexp.MustCompile(`^(?:/` + expr + `)$`)}
			default:
				out.Path = &routes.PathMatch{Type: routes.PathExact, Value: "/" + service + "/" + method}
			}
		case gatewayv1.GRPCMethodMatchRegularExpression:
			svcExpr, methodExpr := `[^/]+`, `[^/]+`
			for _, part := range []struct {
				name, value string
				expr        *string
			}{{"service", service, &svcExpr}, {"method", method, &methodExpr}} {
				if part.value == "" {
					continue
				}
				if _, err := compileRegex(ref, field+".method."+part.name, part.value); err != nil {
					return out, prec, err
				}
				*part.expr = "(?:" + part.value + ")"
			}
			expr := "/" + svcExpr + "/" + methodExpr
			re, err := compileRegex(ref, field+".method", expr)
			if err != nil {
				return out, prec, err
			}
			out.Path = &routes.PathMatch{Type: routes.PathRegex, Value: expr, Regex: re}
		default:
			return out, prec, ref.fail(field+".method.type", "%q is not a method match type (Exact, RegularExpression)", typ)
		}
	}
	seen := map[string]bool{"content-type": true}
	for i, h := range m.Headers {
		if seen[strings.ToLower(string(h.Name))] {
			continue
		}
		seen[strings.ToLower(string(h.Name))] = true
		vm, err := valueMatch(ref, fmt.Sprintf("%s.headers[%d]", field, i), string(h.Name), h.Value, (*string)(h.Type), true)
		if err != nil {
			return out, prec, err
		}
		out.Headers = append(out.Headers, vm)
		prec.headers++
	}
	return out, prec, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
