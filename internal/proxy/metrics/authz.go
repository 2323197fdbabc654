package metrics

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
	if allowed {
		r.httpAuthzAllow.WithLabelValues(l.TargetAddr, l.TLS, l.ClientID, l.ServerName, l.AuthzName, l.RouteName).Inc()
		return
	}
	r.httpAuthzDeny.WithLabelValues(l.TargetAddr, l.TLS, l.ClientID, l.ServerName, l.RouteName).Inc()
}

// TCPAuthz counts an inbound TCP policy decision
// (inbound_tcp_authz_allow_total or inbound_tcp_authz_deny_total);
// RouteName is ignored.
func (r *Registry) TCPAuthz(l AuthzLabels, allowed bool) {
	if allowed {
		r.tcpAuthzAllow.WithLabelValues(l.TargetAddr, l.TLS, l.ClientID, l.ServerName, l.AuthzName).Inc()
		return
	}
	r.tcpAuthzDeny.WithLabelValues(l.TargetAddr, l.TLS, l.ClientID, l.ServerName).Inc()
}
