// Package route is the outbound route layer: it looks up the destination's
// policy (routes.Lookup), chooses the rule of the request (routes.Select),
// and applies the rule's filters — fault injection, redirect, request
// header modifier, URL rewrite, response header modifier — and its
// weighted split, recording the choice in req.Info for the layers below
// (timeout, retry, resolve) and above (metrics). It does not time, retry
// or balance requests.
package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"

	"github.com/skeinmesh/skein/internal/proxy/outbound"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/routes"
)

// Layer is the route layer. With a nil lookup (the proxy runs without a
// controller) it is no layer at all: requests pass untouched.
func Layer(lookup routes.Lookup, log *slog.Logger) stack.Layer {
	return func(next stack.Handler) stack.Handler {
		if lookup == nil {
			return next
		}
		return &router{next: next, lookup: lookup, log: log, randN: rand.Uint64N, percent: randomPercent}
	}
}

type router struct {
	next   stack.Handler
	lookup routes.Lookup
	log    *slog.Logger
	// randN picks backends; percent decides whether a fault of a given
	// percentage applies. Tests replace them.
	randN   func(n uint64) uint64
	percent func(pct float64) bool
}

func randomPercent(pct float64) bool { return pct > 0 && rand.Float64()*100 < pct }

func (r *router) Serve(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	p, key, err := r.policy(ctx, req)
	if err != nil {
		req.Body.Close()
		return nil, err
	}
	if p == nil {
		return r.next.Serve(ctx, req)
	}
	sel, ok := p.Select(req.Method, req.Path, (*requestHeaders)(&req.Header))
	if !ok {
		req.Body.Close()
		return nil, fmt.Errorf("%w: none of the %d routes of %s matches the request", stack.ErrNoRoute, len(p.Routes), key)
	}
	rule := sel.Rule
	req.Info.Policy, req.Info.Rule, req.Info.Route = p, rule, sel.Route.RouteName()

	if f := rule.Fault; f != nil {
		if resp, err := r.injectFault(ctx, req, f); resp != nil || err != nil {
			req.Body.Close()
			return modifyResponse(resp, rule), err
		}
	}
	if rd := rule.Redirect; rd != nil {
		req.Body.Close()
		return modifyResponse(redirect(req, rd, sel.Match, p.Port), rule), nil
	}
	if m := rule.RequestHeaders; m != nil {
		modifyHeader(&req.Header, m)
	}
	if rw := rule.Rewrite; rw != nil {
		rewrite(req, rw, sel.Match)
	}
	if len(rule.Backends) > 0 {
		b, ok := routes.PickBackend(rule.Backends, r.randN)
		if !ok {
			req.Body.Close()
			return nil, fmt.Errorf("route %s: every backend has weight 0: %w", req.Info.Route, stack.ErrNoEndpoints)
		}
		if b.Service == "" || b.Service != p.Service || b.Port != p.Port {
			req.Info.Backend = b.Authority
		}
	}
	if req.Info.Backend == "" && rule.Rewrite != nil && rule.Rewrite.Hostname != "" {
		// The new Host is what the backend reads, not where the request
		// goes: it stays on the destination the policy was found for.
		req.Info.Backend = key
	}
	resp, err := r.next.Serve(ctx, req)
	return modifyResponse(resp, rule), err
}

// policy looks up the policy of req's destination by the keys the resolve
// layer resolves it by: the authority first, then, when the controller
// has no policy by that name, the original destination address.
func (r *router) policy(ctx context.Context, req *stack.Request) (*routes.Policy, string, error) {
	name, addr := outbound.DestinationKeys(req)
	for _, key := range [2]string{name, addr} {
		if key == "" {
			continue
		}
		p, err := r.lookup.Policy(ctx, key)
		if errors.Is(err, routes.ErrNotAnswered) {
			// The controller is away or slow: the defaults, and no second
			// wait for the other key.
			r.log.Debug("no outbound policy yet; going on without routes", "dst", key)
			return nil, "", nil
		}
		if err != nil {
			return nil, key, fmt.Errorf("outbound policy of %s: %w", key, err)
		}
		if p != nil {
			return p, key, nil
		}
	}
	return nil, "", nil
}

// modifyResponse applies the rule's response header modifier to resp.
func modifyResponse(resp *stack.Response, rule *routes.Rule) *stack.Response {
	if resp != nil && rule.ResponseHeaders != nil {
		modifyHeader(&resp.Header, rule.ResponseHeaders)
	}
	return resp
}

// requestHeaders lets routes.Select read a stack.Header.
type requestHeaders stack.Header

func (h *requestHeaders) Lookup(name string) (string, bool) {
	v, found := "", false
	for _, f := range *h {
		if f.Name != name {
			continue
		}
		if found {
			v += "," + f.Value
		} else {
			v, found = f.Value, true
		}
	}
	return v, found
}
