package metrics

import "github.com/prometheus/client_golang/prometheus"

// AuthzLabels describe one inbound authorization decision.
type AuthzLabels struct {
	TargetAddr string
	TLS        string
	ClientID   string
	// ServerName is the Server resource that owns the port (srv_name).
	ServerName string
	// AuthzName is the policy that allowed the request (authz_name); not a
	// label of the deny counters, since nothing authorized the request.
	AuthzName string
	// RouteName is the matched route (route_name); HTTP only.
	RouteName string
}

var (
	httpAuthzAllowLabelNames = []string{"target_addr", "tls", "client_id", "srv_name", "authz_name", "route_name"}
	httpAuthzDenyLabelNames  = []string{"target_addr", "tls", "client_id", "srv_name", "route_name"}
	tcpAuthzAllowLabelNames  = []string{"target_addr", "tls", "client_id", "srv_name", "authz_name"}
	tcpAuthzDenyLabelNames   = []string{"target_addr", "tls", "client_id", "srv_name"}
)

// HTTPAuthz counts an inbound HTTP policy decision
// (inbound_http_authz_allow_total or inbound_http_authz_deny_total).
func (r *Registry) HTTPAuthz(l AuthzLabels, allowed bool) {
	if !allowed {
		l.AuthzName = "" // not a label of the deny counter
	}
	r.authzCounter(authzKey{AuthzLabels: l, http: true, allowed: allowed}).Inc()
}

// TCPAuthz counts an inbound TCP policy decision
// (inbound_tcp_authz_allow_total or inbound_tcp_authz_deny_total);
// RouteName is ignored.
func (r *Registry) TCPAuthz(l AuthzLabels, allowed bool) {
	l.RouteName = ""
	if !allowed {
		l.AuthzName = ""
	}
	r.authzCounter(authzKey{AuthzLabels: l, allowed: allowed}).Inc()
}

// authzKey names one authorization series: its labels, its counter.
type authzKey struct {
	AuthzLabels
	http, allowed bool
}

// authzCounter is k's series.
func (r *Registry) authzCounter(k authzKey) prometheus.Counter {
	return r.authzSeries.get(k, func() prometheus.Counter {
		l := k.AuthzLabels
		switch {
		case k.http && k.allowed:
			return r.httpAuthzAllow.WithLabelValues(l.TargetAddr, l.TLS, l.ClientID, l.ServerName, l.AuthzName, l.RouteName)
		case k.http:
			return r.httpAuthzDeny.WithLabelValues(l.TargetAddr, l.TLS, l.ClientID, l.ServerName, l.RouteName)
		case k.allowed:
			return r.tcpAuthzAllow.WithLabelValues(l.TargetAddr, l.TLS, l.ClientID, l.ServerName, l.AuthzName)
		default:
			return r.tcpAuthzDeny.WithLabelValues(l.TargetAddr, l.TLS, l.ClientID, l.ServerName)
		}
	})
}
