package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// timeoutLabelNames are outbound_http_timeouts_total's labels: the
// destination (as the authority label of the HTTP metrics), the route and
// which timeout ran out (one of a fixed set the timeout layer uses).
var timeoutLabelNames = []string{"authority", "route_name", "timeout"}

func newTimeoutsTotal() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outbound_http_timeouts_total",
		Help: "Outbound HTTP requests cut short by a timeout of their route or their grpc-timeout.",
	}, timeoutLabelNames)
}

// CountTimeout counts a request of ri that the timeout named kind cut
// short. Timeouts are rare: the series is looked up each time.
func (r *Registry) CountTimeout(ri *stack.RequestInfo, kind string) {
	if r == nil {
		return
	}
	r.timeoutsTotal.WithLabelValues(authorityLabel(ri), ri.Route, kind).Inc()
}
