package proxy

import (
	"context"
	"log/slog"
	"time"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/proxy/authorize"
	"github.com/skeinmesh/skein/internal/proxy/clientpool"
	"github.com/skeinmesh/skein/internal/proxy/inbound"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/mirror"
	"github.com/skeinmesh/skein/internal/proxy/outbound"
	"github.com/skeinmesh/skein/internal/proxy/proxyerror"
	"github.com/skeinmesh/skein/internal/proxy/ratelimit"
	"github.com/skeinmesh/skein/internal/proxy/retry"
	"github.com/skeinmesh/skein/internal/proxy/route"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/proxy/tap"
	"github.com/skeinmesh/skein/internal/proxy/timeout"
	"github.com/skeinmesh/skein/internal/proxy/tunnel"
	"github.com/skeinmesh/skein/internal/routes"
)

// The request path of each direction, in the order a request meets it.
// Before these stacks, a connection was accepted (listener.serve), its
// protocol detected and, for a peer proxy, its mesh TLS terminated
// (listener.handle, serveMesh); an engine (h1, h2) then reads requests off
// it and hands each to the stack below, and writes the answer back.
//
// A feature is a layer (a stack.Layer: it wraps the next handler). To add
// one, write it in a package of its own and put it in the list where it
// belongs; the engines do not change. See docs/proxy.md, "The layer stack".

// stackConfig is what the stacks need from the proxy's configuration.
type stackConfig struct {
	metrics           *metrics.Registry
	tunnelIdleTimeout time.Duration
	engines           clientpool.Engines
	log               *slog.Logger
	// routes is the controller's outbound policy; nil without a
	// controller (the route layer then passes requests untouched).
	routes routes.Lookup
	// mirrors sends the copies of mirrored requests; nil mirrors nothing.
	mirrors *mirror.Mirrorer
	// authz is the controller's inbound (authorization) policy of this
	// workload's ports; nil without a controller (the authorization layer
	// is then left out, and every inbound request and connection goes
	// through). It fails closed: a port whose policy never arrived is an
	// error, answered as deny.
	authz authz.Lookup
	// tap turns requests into events for open tap sessions; nil leaves
	// the tap layer out.
	tap *tap.Tap
}

// newAuthorizer is the inbound authorization the stack and the inbound
// listener share, or nil when there is no policy to enforce.
func newAuthorizer(cfg stackConfig) *authorize.Authorizer {
	if cfg.authz == nil {
		return nil
	}
	return authorize.New(cfg.authz, cfg.metrics, cfg.log)
}

// outboundStack is the journey of a request the workload sends out.
func outboundStack(out *outbound.Upstream, cfg stackConfig) stack.Handler {
	// connect: a pooled engine Client to the chosen endpoint — HTTP/2 over
	// mesh TLS to a peer proxy, else as the client spoke.
	connect := out.Connect(cfg.engines)
	return stack.Build(connect, outboundLayers(out, connect, cfg)...)
}

// outboundLayers are the layers of the outbound stack, outermost first,
// over connect.
func outboundLayers(out *outbound.Upstream, connect stack.Handler, cfg stackConfig) []stack.Layer {
	layers := []stack.Layer{
		// metrics: request_total, response_total, response_latency_ms, as
		// the client saw them (the proxy's own answers included).
		metrics.Layer(cfg.metrics, metrics.DirectionOutbound),
	}
	if cfg.tap != nil {
		// tap, beside metrics: the request and answer the client saw,
		// for open tap sessions only (none open: one atomic load).
		layers = append(layers, cfg.tap.Layer(metrics.DirectionOutbound))
	}
	layers = append(layers,
		// errors: a failure below becomes 502/503/504 or gRPC UNAVAILABLE.
		proxyerror.Layer(cfg.log),
		// (rate limits go here: before any work is done for a request.)
		// route: the destination's policy, the request's rule (404 / gRPC
		// UNIMPLEMENTED when routes exist and none matches), fault
		// injection, redirect, header modifiers, rewrite, the weighted
		// backend; names route_name for the metrics above.
		route.Layer(cfg.routes, cfg.log),
	)
	if cfg.mirrors != nil {
		// mirror: a copy of the share of requests the rule asks goes to
		// each mirror backend on a path of its own, resolved, balanced and
		// over mTLS like any request but without metrics, errors or
		// retries, never delaying the primary; its answer is compared.
		layers = append(layers, cfg.mirrors.Layer(mirrorPath(out, connect)))
	}
	return append(layers,
		// timeout: the rule's request, response-header and idle timeouts
		// and the client's grpc-timeout, over every attempt below: 504 /
		// DEADLINE_EXCEEDED, counted.
		timeout.Layer(cfg.metrics),
		// retry: the rule's retries, within the destination's retry budget,
		// each attempt under the per-try timeout; below the timeout and
		// above resolve, so that a retry may land on another endpoint.
		retry.Layer(retry.NewBudgets(retry.DefaultMaxBudgets, nil), cfg.metrics, cfg.log),
		// resolve: the destination by the route's backend or the authority,
		// then by the address the client dialled; fails closed.
		out.Resolve,
		// balance: pick an endpoint (P2C over peak-EWMA) in the request's
		// breaker scope, retry connect failures on another (up to 3), feed
		// the outcome back.
		out.Balance,
		// tunnels: an accepted CONNECT or upgrade is closed when idle.
		tunnel.Layer(cfg.tunnelIdleTimeout),
	)
}

// mirrorPath is the journey of a mirror's copy of a request, to
// req.Info.Backend: resolve, balance, connect.
func mirrorPath(out *outbound.Upstream, connect stack.Handler) stack.Handler {
	return stack.Build(connect, out.Resolve, out.Balance)
}

// inboundStack is the journey of a request that arrives for the workload.
func inboundStack(ctx context.Context, in *inbound.Upstream, cfg stackConfig, az *authorize.Authorizer) stack.Handler {
	// to the application: at the original destination, in the client's
	// HTTP version (HTTP/1.1 when a meshed peer asked).
	return stack.Build(in.Handler(ctx, cfg.engines), inboundLayers(cfg, az)...)
}

// inboundLayers are the layers of the inbound stack, outermost first; az
// is nil without inbound policy.
func inboundLayers(cfg stackConfig, az *authorize.Authorizer) []stack.Layer {
	journey := []stack.Layer{
		// metrics, as the client saw them.
		metrics.Layer(cfg.metrics, metrics.DirectionInbound),
	}
	if cfg.tap != nil {
		// tap, beside metrics.
		journey = append(journey, cfg.tap.Layer(metrics.DirectionInbound))
	}
	journey = append(journey,
		// errors: a failure below becomes 403/404/502/503/504 or its gRPC
		// status, the reason told only to meshed peers.
		proxyerror.Layer(cfg.log),
	)
	if az != nil {
		// authorize: the port's policy decides who may call which route
		// (403 / PERMISSION_DENIED; 404 when the Server's routes match
		// none), counted and logged; names route_name for the metrics
		// above; keeps tunnels so that a tightened policy closes them.
		journey = append(journey, az.Layer)
	}
	if cfg.authz != nil {
		// rate limit: the port's Server's total, per-identity and override
		// limits, after authorization so that a refused client takes no
		// token; 429 / RESOURCE_EXHAUSTED, counted.
		journey = append(journey, ratelimit.Layer(cfg.authz, cfg.metrics))
	}
	return append(journey,
		// tunnels: an accepted CONNECT or upgrade is closed when idle.
		tunnel.Layer(cfg.tunnelIdleTimeout),
	)
}
