package policy

import (
	"fmt"
	"slices"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skeinmesh/skein/internal/routes"
)

// Routes whose parentRef is a policy.skein.io Server are inbound routes:
// the outbound compiler skips them (they attach to no Service) and
// internal/controller/inbound compiles their matches with the functions
// below, so both sides read a match the same way.

// HTTPRouteMatches compiles every match of every rule of an HTTPRoute, in
// precedence order (most specific first); none means the route matches
// every request. The errors name the route and field.
func HTTPRouteMatches(hr *gatewayv1.HTTPRoute) ([]routes.Match, []*Error) {
	ref := objectRef{"HTTPRoute", hr.Namespace, hr.Name}
	var ranked []rankedMatch
	var errs []*Error
	for i, rule := range hr.Spec.Rules {
		if len(rule.Matches) == 0 {
			return nil, errs // a rule without matches takes every request
		}
		for j, m := range rule.Matches {
			match, prec, err := httpMatch(ref, fmt.Sprintf("spec.rules[%d].matches[%d]", i, j), m)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ranked = append(ranked, rankedMatch{match, prec})
		}
	}
	return sortMatches(ranked), errs
}

// GRPCRouteMatches is HTTPRouteMatches for a GRPCRoute.
func GRPCRouteMatches(gr *gatewayv1.GRPCRoute) ([]routes.Match, []*Error) {
	ref := objectRef{"GRPCRoute", gr.Namespace, gr.Name}
	var ranked []rankedMatch
	var errs []*Error
	for i, rule := range gr.Spec.Rules {
		if len(rule.Matches) == 0 {
			return nil, errs
		}
		for j, m := range rule.Matches {
			match, prec, err := grpcMatch(ref, fmt.Sprintf("spec.rules[%d].matches[%d]", i, j), m)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ranked = append(ranked, rankedMatch{match, prec})
		}
	}
	return sortMatches(ranked), errs
}

type rankedMatch struct {
	match routes.Match
	prec  precedence
}

func sortMatches(ranked []rankedMatch) []routes.Match {
	slices.SortStableFunc(ranked, func(a, b rankedMatch) int { return a.prec.compare(b.prec) })
	out := make([]routes.Match, len(ranked))
	for i, r := range ranked {
		out[i] = r.match
	}
	return out
}
