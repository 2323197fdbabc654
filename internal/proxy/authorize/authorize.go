// Package authorize applies the inbound policy of the workload's ports
// (authz.Inbound, from the controller through an authz.Lookup): the layer
// that answers HTTP requests the policy denies (403, gRPC
// PERMISSION_DENIED), the check of every opaque connection before a byte
// of it reaches the application, and the closing of open connections a
// tightened policy no longer allows. What is allowed is authz.Decide's
// business; this package asks it, counts, logs and enforces.
package authorize

import (
	"context"
	"log/slog"
	"strings"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// Authorizer decides inbound requests and connections, and keeps the
// open connections it allowed so that a policy change can close those it
// no longer allows (see Run).
type Authorizer struct {
	lookup  authz.Lookup
	metrics *metrics.Registry
	log     *slog.Logger
	logs    *rateLog
	conns   *registry
}

// New returns an Authorizer deciding by lookup's policies. Run must be
// called for policy changes to reach open connections.
func New(lookup authz.Lookup, reg *metrics.Registry, log *slog.Logger) *Authorizer {
	return &Authorizer{lookup: lookup, metrics: reg, log: log, logs: newRateLog(log, logInterval), conns: newRegistry()}
}

// policy is the current policy of port; nil when none could be had
// (Decide then denies). The lookup bounds its own wait for a first answer
// (authzclient's WaitFirst), so no timer is set here per request: one
// would cost every request a runtime timer for a wait that only the first
// requests of a port can have.
func (a *Authorizer) policy(ctx context.Context, port uint16) *authz.Inbound {
	in, err := a.lookup.Inbound(ctx, port)
	if err != nil {
		a.logs.warn("policy", "no inbound policy for the port: denying (fail closed)", "port", port, "err", err)
		return nil
	}
	return in
}

// client is who is calling on a connection: mesh TLS verified its
// identity, if any.
func client(ci *stack.ConnInfo) authz.Client {
	return authz.Client{Addr: ci.Client.Addr(), Identity: ci.ClientID}
}

// Layer authorizes each HTTP request before anything below sees it. A
// denied request is answered by the errors layer above (stack.ForbiddenError:
// 403 / PERMISSION_DENIED; stack.ErrNoRoute: 404 / UNIMPLEMENTED when the
// Server's routes match none); an audited one goes on. An accepted
// CONNECT or upgrade is kept, so that a tightened policy can close the
// tunnel.
func (a *Authorizer) Layer(next stack.Handler) stack.Handler {
	return stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		c := client(req.Conn)
		r := request(req.Method, req.Path, req.Header)
		d := a.policy(ctx, req.Conn.OrigDst.Port()).Decide(c, r)
		if d.Route != "" {
			req.Info.Route = d.Route
		}
		if d.NoRoute {
			req.Body.Close()
			return nil, &noRouteError{reason: d.Reason()}
		}
		a.metrics.HTTPAuthz(labels(req.Conn, d), d.Allowed)
		if !d.Allowed || d.Audit {
			a.logDecision(req.Conn, d, "request", "method", req.Method, "path", pathOnly(req.Path))
		}
		if !d.Allowed {
			req.Body.Close()
			return nil, &stack.ForbiddenError{Reason: d.Reason()}
		}
		if req.Method != "CONNECT" && !req.IsUpgrade() {
			return next.Serve(ctx, req)
		}
		return a.serveTunnel(ctx, next, req)
	})
}

// request is what Decide looks at of a request.
func request(method, path string, h stack.Header) *authz.Request {
	return &authz.Request{Method: method, Path: path, Header: func(name string) (string, bool) {
		var vals []string
		for _, f := range h {
			if f.Name == name {
				vals = append(vals, f.Value)
			}
		}
		return strings.Join(vals, ","), len(vals) > 0
	}}
}

// pathOnly drops the query of a path: logs do not carry what a client put
// in it.
func pathOnly(p string) string {
	p, _, _ = strings.Cut(p, "?")
	return p
}

// noRouteError is a request no route of the Server matches.
type noRouteError struct{ reason string }

func (e *noRouteError) Error() string { return e.reason }
func (e *noRouteError) Unwrap() error { return stack.ErrNoRoute }

// Conn decides an opaque connection (opaque TCP, TLS the proxy does not
// terminate, a peer's opaque mesh connection) before any of its bytes go
// anywhere: the caller closes a denied one without dialling the
// application. It counts inbound_tcp_authz_{allow,deny}_total.
func (a *Authorizer) Conn(ctx context.Context, ci *stack.ConnInfo) authz.Decision {
	d := a.policy(ctx, ci.OrigDst.Port()).Decide(client(ci), nil)
	a.metrics.TCPAuthz(labels(ci, d), d.Allowed)
	if !d.Allowed || d.Audit {
		a.logDecision(ci, d, "connection")
	}
	return d
}

// labels are the authz counters' labels of decision d. authz_name is the
// AuthorizationPolicy that allowed, else "probe", "audit" or
// "default:<policy>".
func labels(ci *stack.ConnInfo, d authz.Decision) metrics.AuthzLabels {
	l := metrics.AuthzLabels{
		TargetAddr: ci.Target,
		TLS:        metrics.TLSNoIdentity,
		ClientID:   ci.ClientID,
		ServerName: d.Server,
		AuthzName:  d.Authorization,
		RouteName:  d.Route,
	}
	if l.TargetAddr == "" {
		l.TargetAddr = ci.OrigDstString()
	}
	if ci.ClientID != "" {
		l.TLS = metrics.TLSTrue
	}
	switch {
	case l.AuthzName != "":
	case d.Probe:
		l.AuthzName = "probe"
	case d.Audit:
		l.AuthzName = "audit"
	case d.Allowed:
		l.AuthzName = defaultAuthzName(d.Default)
	}
	return l
}

// defaultAuthzName is the authz_name of a request a default policy
// allowed: a constant for each policy that can allow, so that counting
// the request allocates nothing.
func defaultAuthzName(p authz.DefaultPolicy) string {
	switch p {
	case authz.AllUnauthenticated:
		return "default:" + string(authz.AllUnauthenticated)
	case authz.AllAuthenticated:
		return "default:" + string(authz.AllAuthenticated)
	case authz.ClusterUnauthenticated:
		return "default:" + string(authz.ClusterUnauthenticated)
	case authz.ClusterAuthenticated:
		return "default:" + string(authz.ClusterAuthenticated)
	}
	return "default:" + string(p)
}

// logDecision logs a denial, or an audit's would-be denial, at most once
// per Server and kind (request, connection) per logInterval (with how many were not logged in between):
// a flood of denied requests must not flood the log. Callers call it for
// those only: building its attributes costs an allowed request
// allocations for nothing.
func (a *Authorizer) logDecision(ci *stack.ConnInfo, d authz.Decision, what string, attrs ...any) {
	attrs = append(attrs, "server", d.Server, "client", ci.Client.Addr().String(), "client_id", ci.ClientID,
		"route", d.Route, "default", string(d.Default), "reason", d.Reason())
	if d.Audit {
		a.logs.info("audit:"+what+":"+d.Server, "audit: "+what+" allowed that the policy would deny", attrs...)
		return
	}
	a.logs.info("deny:"+what+":"+d.Server, what+" denied by inbound policy", attrs...)
}
