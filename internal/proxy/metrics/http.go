package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the classification label.
const (
	ClassSuccess = "success"
	ClassFailure = "failure"
)

// RequestRecorder records requests and responses that share one HTTPLabels
// value. It is cached per label set and shared by every request with those
// labels; it is safe for concurrent use.
type RequestRecorder struct {
	reg      *Registry
	values   []string // HTTPLabels.values(), the prefix of every response series
	requests prometheus.Counter

	responses seriesCache[responseKey, *responseSeries]
}

type responseKey struct {
	status int    // 0: no response
	grpc   string // "" when not gRPC, else "0".."16"
}

type responseSeries struct {
	total   prometheus.Counter
	latency prometheus.Observer
}

// Request counts a request (request_total) and returns the recorder for its
// response. Call it once per request, when the request's labels are known.
func (r *Registry) Request(l HTTPLabels) *RequestRecorder {
	rr := r.requestRecorder(l)
	rr.requests.Inc()
	return rr
}

func (r *Registry) requestRecorder(l HTTPLabels) *RequestRecorder {
	return r.httpSeries.get(l, func() *RequestRecorder {
		values := l.values()
		return &RequestRecorder{
			reg:      r,
			values:   values,
			requests: r.requestTotal.WithLabelValues(values...),
		}
	})
}

// Response records one response: response_total and response_latency_ms
// with status_code, grpc_status and classification.
//
// statusCode 0 means no response came back (connect failure, reset,
// timeout): status_code is then empty and the response is a failure. A
// code outside 100-599 is read the same way.
// grpcStatus is the decimal grpc-status ("" when the response is not gRPC);
// values outside 0..16 are recorded as "2" (UNKNOWN), as the gRPC spec says
// to read unknown codes, which also bounds the label's cardinality. latency
// is whatever the caller measured (by convention: request arrival to
// response headers, or to the failure).
//
// Classification:
//   - no response, or an HTTP status of 500 or above: failure;
//   - gRPC: the codes whose HTTP equivalent is a 5xx are failures — UNKNOWN
//     (2), DEADLINE_EXCEEDED (4), UNIMPLEMENTED (12), INTERNAL (13),
//     UNAVAILABLE (14), DATA_LOSS (15). Every other code, like an HTTP 4xx,
//     is the caller's problem, not the server's, and counts as success
//     (NOT_FOUND, PERMISSION_DENIED, RESOURCE_EXHAUSTED, CANCELLED, ...);
//   - everything else: success.
func (rr *RequestRecorder) Response(statusCode int, grpcStatus string, latency time.Duration) {
	if rr == nil {
		return
	}
	rs := rr.responseSeries(responseKey{status: normalizeStatus(statusCode), grpc: normalizeGRPCStatus(grpcStatus)})
	rs.total.Inc()
	rs.latency.Observe(float64(latency) / float64(time.Millisecond))
}

func (rr *RequestRecorder) responseSeries(k responseKey) *responseSeries {
	return rr.responses.get(k, func() *responseSeries {
		values := append(append(make([]string, 0, len(rr.values)+3), rr.values...),
			statusCodeLabel(k.status), k.grpc, classify(k.status, k.grpc))
		return &responseSeries{
			total:   rr.reg.responseTotal.WithLabelValues(values...),
			latency: rr.reg.responseLatency.WithLabelValues(values...),
		}
	})
}

func classify(status int, grpc string) string {
	if IsFailure(status, grpc) {
		return ClassFailure
	}
	return ClassSuccess
}

// IsFailure says whether a response counts as a failure of the server: no
// response (status 0), HTTP >= 500, or a gRPC status meaning the server
// could not serve (see RequestRecorder.Response). The balancer uses the same
// rule, so what the metrics call a failure is what it avoids.
func IsFailure(status int, grpcStatus string) bool {
	if status == 0 || status >= 500 {
		return true
	}
	switch grpcStatus {
	case "2", "4", "12", "13", "14", "15":
		return true
	}
	return false
}

// normalizeStatus keeps the codes HTTP defines (100-599); a server may send
// any three digits, and each would be a series of its own.
func normalizeStatus(code int) int {
	if code < 100 || code > 599 {
		return 0
	}
	return code
}

func statusCodeLabel(code int) string {
	if code == 0 {
		return ""
	}
	return strconv.Itoa(code)
}

// normalizeGRPCStatus returns one of a fixed set of strings, so the cache
// never keeps a caller's (possibly header-backed) string alive and a peer
// cannot grow the label's cardinality.
func normalizeGRPCStatus(s string) string {
	if s == "" {
		return ""
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n >= len(grpcCodes) || grpcCodes[n] != s {
		return grpcCodes[2] // UNKNOWN
	}
	return grpcCodes[n]
}

var grpcCodes = [...]string{
	"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
}
