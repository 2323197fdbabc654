package metrics

import "github.com/prometheus/client_golang/prometheus"

// rateLimitLabelNames are inbound_http_local_ratelimit_total's labels: the
// Server whose limit it was (from the controller's configuration), which of
// its limits (one of the Scope* values) and the client's verified identity
// ("" for unmeshed clients). Identities come from certificates the mesh
// issued, so their number is bounded by the mesh, as for the authz
// counters.
var rateLimitLabelNames = []string{"srv_name", "scope", "client_id"}

// Values of inbound_http_local_ratelimit_total's scope label, as Linkerd
// names them.
const (
	ScopeTotal    = "total"    // the Server's total limit
	ScopeIdentity = "identity" // the per-identity limit
	ScopeOverride = "override" // an identity's override of its own
)

func newRateLimitTotal() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "inbound_http_local_ratelimit_total",
		Help: "Inbound HTTP requests refused (429 / RESOURCE_EXHAUSTED) by a local rate limit of their Server.",
	}, rateLimitLabelNames)
}

// CountRateLimited counts one request a Server's local rate limit refused;
// scope is one of the Scope* values. Refusals are looked up each time: the
// series' own counter is a map read away.
func (r *Registry) CountRateLimited(server, scope, clientID string) {
	if r == nil {
		return
	}
	r.rateLimitTotal.WithLabelValues(server, scope, clientID).Inc()
}
