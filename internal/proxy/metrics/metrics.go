// Package metrics is the proxy's Prometheus metrics: HTTP request and
// response counters and latency, TCP connection counters, and inbound
// authorization decisions. Names and labels follow Linkerd's proxy metrics
// (request_total, response_total, response_latency_ms, tcp_*) so existing
// dashboards and queries keep working; the label set is documented in
// labels.go.
//
// The hot path resolves label values to child metrics once per request or
// connection and caches that lookup, so recording a response costs a map
// read and a few atomic adds. It does not serve HTTP itself beyond Handler:
// the admin server mounts that.
package metrics

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds every metric the proxy exports, in its own
// prometheus.Registry (never the global one, so tests and several proxies in
// one process do not collide).
type Registry struct {
	reg        *prometheus.Registry
	registerer prometheus.Registerer // reg wrapped with the constant labels

	requestTotal    *prometheus.CounterVec
	responseTotal   *prometheus.CounterVec
	responseLatency *prometheus.HistogramVec

	tcpOpenTotal       *prometheus.CounterVec
	tcpCloseTotal      *prometheus.CounterVec
	tcpOpenConnections *prometheus.GaugeVec
	tcpReadBytes       *prometheus.CounterVec
	tcpWriteBytes      *prometheus.CounterVec

	httpAuthzAllow *prometheus.CounterVec
	httpAuthzDeny  *prometheus.CounterVec
	tcpAuthzAllow  *prometheus.CounterVec
	tcpAuthzDeny   *prometheus.CounterVec

	authzSeries seriesCache[authzKey, prometheus.Counter]

	timeoutsTotal  *prometheus.CounterVec
	rateLimitTotal *prometheus.CounterVec

	httpSeries seriesCache[HTTPLabels, *RequestRecorder]
	tcpSeries  seriesCache[TCPLabels, *tcpSeries]

	routeActualResponseTotal *prometheus.CounterVec
	routeRetryTotal          *prometheus.CounterVec

	routeSeries seriesCache[RouteLabels, *RouteRecorder]
}

// LatencyBucketsMs are response_latency_ms's bucket bounds, the same as
// Linkerd's so that histogram_quantile over both meshes agrees.
var LatencyBucketsMs = []float64{
	1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
	1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000,
}

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// New builds a Registry whose every series, including the Go runtime and
// process collectors (process_cpu_seconds_total,
// process_resident_memory_bytes, go_*), carries constLabels — the proxy's own
// workload labels, e.g. {"namespace": "demo", "workload": "emoji", "pod":
// "emoji-0"}. A constant label may not reuse a name from the metrics' own
// label sets (direction, authority, dst_*, ...).
func New(constLabels map[string]string) (*Registry, error) {
	if err := ValidateConstLabels(constLabels); err != nil {
		return nil, err
	}
	r := &Registry{
		reg: prometheus.NewRegistry(),
	}
	r.registerer = prometheus.WrapRegistererWith(prometheus.Labels(constLabels), r.reg)

	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	r.requestTotal = counter("request_total", "Total HTTP requests the proxy received.", httpLabelNames)
	r.responseTotal = counter("response_total", "Total HTTP responses (or failures to get one).", responseLabelNames)
	r.responseLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "response_latency_ms",
		Help:    "Time from the request's arrival until the response headers (or the failure), in milliseconds.",
		Buckets: LatencyBucketsMs,
	}, responseLabelNames)

	r.tcpOpenTotal = counter("tcp_open_total", "Total TCP connections opened.", tcpLabelNames)
	r.tcpCloseTotal = counter("tcp_close_total", "Total TCP connections closed; errno is empty on a clean close.", tcpCloseLabelNames)
	r.tcpOpenConnections = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tcp_open_connections", Help: "TCP connections open now.",
	}, tcpLabelNames)
	r.tcpReadBytes = counter("tcp_read_bytes_total", "Total bytes read from TCP peers.", tcpLabelNames)
	r.tcpWriteBytes = counter("tcp_write_bytes_total", "Total bytes written to TCP peers.", tcpLabelNames)

	r.httpAuthzAllow = counter("inbound_http_authz_allow_total", "Inbound HTTP requests allowed by policy.", httpAuthzAllowLabelNames)
	r.httpAuthzDeny = counter("inbound_http_authz_deny_total", "Inbound HTTP requests denied by policy.", httpAuthzDenyLabelNames)
	r.tcpAuthzAllow = counter("inbound_tcp_authz_allow_total", "Inbound TCP connections allowed by policy.", tcpAuthzAllowLabelNames)
	r.tcpAuthzDeny = counter("inbound_tcp_authz_deny_total", "Inbound TCP connections denied by policy.", tcpAuthzDenyLabelNames)

	r.timeoutsTotal = newTimeoutsTotal()
	r.rateLimitTotal = newRateLimitTotal()
	r.routeActualResponseTotal = counter("route_actual_response_total",
		"Total attempts sent for a route (first attempts and retries) by their outcome.", routeActualResponseLabelNames)
	r.routeRetryTotal = counter("route_retry_total",
		"Retries of a route: attempted, succeeded, or not made because the budget was exhausted or the limit reached.", routeRetryLabelNames)

	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.requestTotal, r.responseTotal, r.responseLatency,
		r.tcpOpenTotal, r.tcpCloseTotal, r.tcpOpenConnections, r.tcpReadBytes, r.tcpWriteBytes,
		r.httpAuthzAllow, r.httpAuthzDeny, r.tcpAuthzAllow, r.tcpAuthzDeny,
		r.timeoutsTotal, r.rateLimitTotal,
		r.routeActualResponseTotal, r.routeRetryTotal,
	} {
		if err := r.registerer.Register(c); err != nil {
			return nil, fmt.Errorf("registering proxy metrics: %w", err)
		}
	}
	return r, nil
}

// ValidateConstLabels reports whether New would accept constLabels, for a
// proxy's Config.Validate to call before anything starts.
func ValidateConstLabels(constLabels map[string]string) error {
	reserved := make(map[string]bool)
	for _, set := range [][]string{responseLabelNames, tcpCloseLabelNames, httpAuthzAllowLabelNames, tcpAuthzAllowLabelNames, timeoutLabelNames,
		routeActualResponseLabelNames, routeRetryLabelNames, rateLimitLabelNames} {
		for _, name := range set {
			reserved[name] = true
		}
	}
	for name := range constLabels {
		switch {
		case !labelNameRE.MatchString(name) || strings.HasPrefix(name, "__"):
			return fmt.Errorf("metrics constant label %q: not a valid Prometheus label name", name)
		case reserved[name], name == "le", name == "quantile":
			return fmt.Errorf("metrics constant label %q: name is already used by the proxy's own labels", name)
		}
	}
	return nil
}

// Handler serves this registry in the Prometheus exposition format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}

// Gatherer is the registry, for tests and for pushing elsewhere.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Registerer lets other parts of the proxy (balancer, tap, identity) add
// their own metrics to the same endpoint; what they register gets the
// constant labels too.
func (r *Registry) Registerer() prometheus.Registerer { return r.registerer }
