package metrics

import (
	"fmt"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Route-level series the retry layer records, beside the per-request ones
// the metrics layer records as the client saw them:
//
//	route_actual_response_total  every attempt the proxy sent for a route and
//	                             its outcome, labelled attempt="first" or
//	                             "retry": the first attempts' success rate is
//	                             the "actual" one (before retries), while
//	                             response_total's is the "effective" one
//	                             (what the client got)
//	route_retry_total            retries by result: "attempted" (a retry sent),
//	                             "succeeded" (a retried request whose final
//	                             answer was a success), "budget_exhausted" (a
//	                             retryable failure answered as is because the
//	                             destination's retry budget was out),
//	                             "limit_reached" (a retryable failure answered
//	                             as is after the route's retry limit)
//
// Both are labelled direction, authority (the destination of the route's
// policy, "name.namespace.svc.cluster.local:port"), route_name, and
// dst_namespace and dst_service (the policy's Service, as response_total
// names a destination's), all from the controller's configuration;
// route_actual_response_total adds
// status_code, grpc_status and classification as response_total does.
var (
	routeLabelNames               = []string{"direction", "authority", "route_name", "dst_namespace", "dst_service"}
	routeActualResponseLabelNames = append(append([]string(nil), routeLabelNames...),
		"attempt", "status_code", "grpc_status", "classification")
	routeRetryLabelNames = append(append([]string(nil), routeLabelNames...), "result")
)

// Values of route_retry_total's result label.
const (
	RetryAttempted       = "attempted"
	RetrySucceeded       = "succeeded"
	RetryBudgetExhausted = "budget_exhausted"
	RetryLimitReached    = "limit_reached"
)

var retryResults = [...]string{RetryAttempted, RetrySucceeded, RetryBudgetExhausted, RetryLimitReached}

// RouteLabels name one route of one destination. Both come from the
// controller's configuration, never from a request.
type RouteLabels struct {
	Direction string
	// Service ("namespace/name") and Port are the policy's destination;
	// its authority label is PolicyAuthority(Service, Port).
	Service   string
	Port      uint16
	RouteName string
}

// PolicyAuthority is the authority label of a destination's policy:
// service "namespace/name" and port as "name.namespace.svc.cluster.local:port",
// the name discovery resolves it by.
func PolicyAuthority(service string, port uint16) string {
	ns, name, ok := strings.Cut(service, "/")
	if !ok {
		return fmt.Sprintf("%s:%d", service, port)
	}
	return fmt.Sprintf("%s.%s.svc.cluster.local:%d", name, ns, port)
}

// RouteRecorder records the attempts and retries of one route. It is
// cached per RouteLabels and safe for concurrent use.
type RouteRecorder struct {
	reg     *Registry
	values  []string
	retries [len(retryResults)]prometheus.Counter

	mu       sync.RWMutex
	attempts map[attemptKey]prometheus.Counter
}

type attemptKey struct {
	retry bool
	responseKey
}

// Route returns the recorder of a route's attempts and retries.
func (r *Registry) Route(l RouteLabels) *RouteRecorder {
	if r == nil {
		return nil
	}
	return r.routeSeries.get(l, func() *RouteRecorder {
		ns, name, ok := strings.Cut(l.Service, "/")
		if !ok {
			ns, name = "", l.Service
		}
		rr := &RouteRecorder{reg: r, values: []string{l.Direction, PolicyAuthority(l.Service, l.Port), l.RouteName, ns, name},
			attempts: make(map[attemptKey]prometheus.Counter)}
		for i, result := range retryResults {
			rr.retries[i] = r.routeRetryTotal.WithLabelValues(append(append([]string(nil), rr.values...), result)...)
		}
		return rr
	})
}

// Attempt counts one attempt's outcome in route_actual_response_total:
// retry says whether it was a retry rather than the request's first
// attempt; status and grpcStatus are read as RequestRecorder.Response
// reads them (status 0: no response).
func (rr *RouteRecorder) Attempt(retry bool, status int, grpcStatus string) {
	if rr == nil {
		return
	}
	k := attemptKey{retry: retry, responseKey: responseKey{status: normalizeStatus(status), grpc: normalizeGRPCStatus(grpcStatus)}}
	rr.mu.RLock()
	c, ok := rr.attempts[k]
	rr.mu.RUnlock()
	if !ok {
		rr.mu.Lock()
		if c, ok = rr.attempts[k]; !ok {
			attempt := "first"
			if retry {
				attempt = "retry"
			}
			c = rr.reg.routeActualResponseTotal.WithLabelValues(append(append([]string(nil), rr.values...),
				attempt, statusCodeLabel(k.status), k.grpc, classify(k.status, k.grpc))...)
			rr.attempts[k] = c
		}
		rr.mu.Unlock()
	}
	c.Inc()
}

// Retry counts one route_retry_total event; result is one of the Retry*
// constants (anything else is ignored).
func (rr *RouteRecorder) Retry(result string) {
	if rr == nil {
		return
	}
	for i, r := range retryResults {
		if r == result {
			rr.retries[i].Inc()
			return
		}
	}
}
