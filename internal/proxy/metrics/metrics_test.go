package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

var selfLabels = map[string]string{"namespace": "demo", "workload": "web", "pod": "web-0"}

func newTestRegistry(t testing.TB) *Registry {
	t.Helper()
	r, err := New(selfLabels)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

var outboundEmoji = HTTPLabels{
	Direction:  DirectionOutbound,
	Authority:  "emoji.demo.svc.cluster.local:8080",
	TargetAddr: "198.18.0.5:8080",
	TLS:        TLSTrue,
	ServerID:   "spiffe://skein.local/ns/demo/sa/emoji",
	RouteName:  "default",
	Dst:        DstFromEndpointLabels(map[string]string{"namespace": "demo", "service": "emoji", "workload": "emoji", "pod": "emoji-0", "zone": "ignored"}),
}

func TestHTTPExposition(t *testing.T) {
	r := newTestRegistry(t)
	r.Request(outboundEmoji).Response(200, "", 3*time.Millisecond)
	for range 2 {
		r.Request(outboundEmoji).Response(503, "", 10*time.Millisecond)
	}
	r.Request(outboundEmoji) // still in flight

	// Labels in sorted order, as the exposition writes them.
	const want = `
# HELP request_total Total HTTP requests the proxy received.
# TYPE request_total counter
request_total{authority="emoji.demo.svc.cluster.local:8080",client_id="",direction="outbound",dst_namespace="demo",dst_pod="emoji-0",dst_service="emoji",dst_workload="emoji",namespace="demo",pod="web-0",route_name="default",server_id="spiffe://skein.local/ns/demo/sa/emoji",target_addr="198.18.0.5:8080",tls="true",workload="web"} 4
# HELP response_total Total HTTP responses (or failures to get one).
# TYPE response_total counter
response_total{authority="emoji.demo.svc.cluster.local:8080",classification="failure",client_id="",direction="outbound",dst_namespace="demo",dst_pod="emoji-0",dst_service="emoji",dst_workload="emoji",grpc_status="",namespace="demo",pod="web-0",route_name="default",server_id="spiffe://skein.local/ns/demo/sa/emoji",status_code="503",target_addr="198.18.0.5:8080",tls="true",workload="web"} 2
response_total{authority="emoji.demo.svc.cluster.local:8080",classification="success",client_id="",direction="outbound",dst_namespace="demo",dst_pod="emoji-0",dst_service="emoji",dst_workload="emoji",grpc_status="",namespace="demo",pod="web-0",route_name="default",server_id="spiffe://skein.local/ns/demo/sa/emoji",status_code="200",target_addr="198.18.0.5:8080",tls="true",workload="web"} 1
`
	if err := testutil.GatherAndCompare(r.Gatherer(), strings.NewReader(want), "request_total", "response_total"); err != nil {
		t.Error(err)
	}
}

func TestResponseClassification(t *testing.T) {
	tests := []struct {
		status     int
		grpc       string
		wantStatus string
		wantGRPC   string
		wantClass  string
	}{
		{200, "", "200", "", ClassSuccess},
		{404, "", "404", "", ClassSuccess},
		{429, "", "429", "", ClassSuccess},
		{500, "", "500", "", ClassFailure},
		{503, "", "503", "", ClassFailure},
		{0, "", "", "", ClassFailure},    // no response at all
		{1000, "", "", "", ClassFailure}, // not an HTTP status: read as no response
		{600, "", "", "", ClassFailure},  // three digits, but not a status HTTP defines
		{599, "", "599", "", ClassFailure},
		{200, "0", "200", "0", ClassSuccess},
		{200, "1", "200", "1", ClassSuccess}, // CANCELLED: the client gave up
		{200, "2", "200", "2", ClassFailure}, // UNKNOWN
		{200, "3", "200", "3", ClassSuccess}, // INVALID_ARGUMENT
		{200, "4", "200", "4", ClassFailure}, // DEADLINE_EXCEEDED
		{200, "5", "200", "5", ClassSuccess}, // NOT_FOUND
		{200, "7", "200", "7", ClassSuccess}, // PERMISSION_DENIED
		{200, "8", "200", "8", ClassSuccess}, // RESOURCE_EXHAUSTED
		{200, "12", "200", "12", ClassFailure},
		{200, "13", "200", "13", ClassFailure},
		{200, "14", "200", "14", ClassFailure}, // UNAVAILABLE
		{200, "15", "200", "15", ClassFailure},
		{200, "16", "200", "16", ClassSuccess}, // UNAUTHENTICATED
		{200, "99", "200", "2", ClassFailure},  // unknown code reads as UNKNOWN
		{200, "05", "200", "2", ClassFailure},
		{200, "ok", "200", "2", ClassFailure},
		{503, "0", "503", "0", ClassFailure},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%q", tt.status, tt.grpc), func(t *testing.T) {
			r := newTestRegistry(t)
			r.Request(outboundEmoji).Response(tt.status, tt.grpc, time.Millisecond)
			got := seriesLabels(t, r.Gatherer(), "response_total")
			if len(got) != 1 {
				t.Fatalf("got %d response_total series, want 1: %v", len(got), got)
			}
			l := got[0]
			if l["status_code"] != tt.wantStatus || l["grpc_status"] != tt.wantGRPC || l["classification"] != tt.wantClass {
				t.Errorf("status_code=%q grpc_status=%q classification=%q, want %q %q %q",
					l["status_code"], l["grpc_status"], l["classification"], tt.wantStatus, tt.wantGRPC, tt.wantClass)
			}
		})
	}
}

func TestLatencyHistogramBuckets(t *testing.T) {
	r := newTestRegistry(t)
	for _, d := range []time.Duration{
		500 * time.Microsecond, time.Millisecond, 7 * time.Millisecond, 150 * time.Millisecond, 60 * time.Second,
	} {
		r.Request(outboundEmoji).Response(200, "", d)
	}
	h := onlyMetric(t, r.Gatherer(), "response_latency_ms").GetHistogram()
	wantCumulative := map[float64]uint64{1: 2, 2: 2, 5: 2, 10: 3, 100: 3, 200: 4, 50000: 4}
	for _, b := range h.GetBucket() {
		if want, ok := wantCumulative[b.GetUpperBound()]; ok && b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: count %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if len(h.GetBucket()) != len(LatencyBucketsMs) {
		t.Errorf("%d buckets, want %d", len(h.GetBucket()), len(LatencyBucketsMs))
	}
	if h.GetSampleCount() != 5 {
		t.Errorf("sample count %d, want 5", h.GetSampleCount())
	}
	if want := 0.5 + 1 + 7 + 150 + 60000; h.GetSampleSum() != want {
		t.Errorf("sample sum %v, want %v", h.GetSampleSum(), want)
	}
}

func TestTCPExposition(t *testing.T) {
	r := newTestRegistry(t)
	l := TCPLabels{Direction: DirectionInbound, TargetAddr: "10.0.0.1:3306", TLS: TLSNoIdentity, Dst: DstLabels{Namespace: "demo", Workload: "web", Pod: "web-0"}}
	c1 := r.TCPOpen(l)
	c2 := r.TCPOpen(l)
	c1.AddRead(100)
	c1.AddWrite(40)
	c2.AddRead(1)
	c2.AddWrite(0)
	c2.AddRead(-1) // ignored
	c1.Close("")
	c1.Close("ECONNRESET") // already closed: not counted

	// Labels in sorted order, as the exposition writes them; errno sorts
	// between the two halves.
	const head = `client_id="",direction="inbound",dst_namespace="demo",dst_pod="web-0",dst_service="",dst_workload="web"`
	const tail = `namespace="demo",pod="web-0",server_id="",target_addr="10.0.0.1:3306",tls="no_identity",workload="web"`
	const common = head + "," + tail
	want := fmt.Sprintf(`
# HELP tcp_close_total Total TCP connections closed; errno is empty on a clean close.
# TYPE tcp_close_total counter
tcp_close_total{%[2]s,errno="",%[3]s} 1
# HELP tcp_open_connections TCP connections open now.
# TYPE tcp_open_connections gauge
tcp_open_connections{%[1]s} 1
# HELP tcp_open_total Total TCP connections opened.
# TYPE tcp_open_total counter
tcp_open_total{%[1]s} 2
# HELP tcp_read_bytes_total Total bytes read from TCP peers.
# TYPE tcp_read_bytes_total counter
tcp_read_bytes_total{%[1]s} 101
# HELP tcp_write_bytes_total Total bytes written to TCP peers.
# TYPE tcp_write_bytes_total counter
tcp_write_bytes_total{%[1]s} 40
`, common, head, tail)
	names := []string{"tcp_close_total", "tcp_open_connections", "tcp_open_total", "tcp_read_bytes_total", "tcp_write_bytes_total"}
	if err := testutil.GatherAndCompare(r.Gatherer(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	c2.Close("ECONNRESET")
	c2.Close("ECONNRESET")
	if got := testutil.ToFloat64(r.tcpOpenConnections); got != 0 {
		t.Errorf("open connections after closing both: %v, want 0", got)
	}
	if got := testutil.ToFloat64(r.tcpCloseTotal.WithLabelValues(append(l.values(), "ECONNRESET")...)); got != 1 {
		t.Errorf("tcp_close_total{errno=ECONNRESET} = %v, want 1", got)
	}
}

func TestAuthzExposition(t *testing.T) {
	r := newTestRegistry(t)
	l := AuthzLabels{TargetAddr: "10.0.0.1:8080", TLS: TLSTrue, ClientID: "spiffe://skein.local/ns/demo/sa/web", ServerName: "emoji-http", AuthzName: "allow-web", RouteName: "get"}
	r.HTTPAuthz(l, true)
	r.HTTPAuthz(l, false)
	r.TCPAuthz(l, true)
	r.TCPAuthz(l, false)
	r.TCPAuthz(l, false)

	const client = `client_id="spiffe://skein.local/ns/demo/sa/web"`
	const rest = `namespace="demo",pod="web-0"`
	const srv = `srv_name="emoji-http",target_addr="10.0.0.1:8080",tls="true",workload="web"`
	want := fmt.Sprintf(`
# HELP inbound_http_authz_allow_total Inbound HTTP requests allowed by policy.
# TYPE inbound_http_authz_allow_total counter
inbound_http_authz_allow_total{authz_name="allow-web",%[1]s,%[2]s,route_name="get",%[3]s} 1
# HELP inbound_http_authz_deny_total Inbound HTTP requests denied by policy.
# TYPE inbound_http_authz_deny_total counter
inbound_http_authz_deny_total{%[1]s,%[2]s,route_name="get",%[3]s} 1
# HELP inbound_tcp_authz_allow_total Inbound TCP connections allowed by policy.
# TYPE inbound_tcp_authz_allow_total counter
inbound_tcp_authz_allow_total{authz_name="allow-web",%[1]s,%[2]s,%[3]s} 1
# HELP inbound_tcp_authz_deny_total Inbound TCP connections denied by policy.
# TYPE inbound_tcp_authz_deny_total counter
inbound_tcp_authz_deny_total{%[1]s,%[2]s,%[3]s} 2
`, client, rest, srv)
	names := []string{"inbound_http_authz_allow_total", "inbound_http_authz_deny_total", "inbound_tcp_authz_allow_total", "inbound_tcp_authz_deny_total"}
	if err := testutil.GatherAndCompare(r.Gatherer(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestProcessMetricsCarryConstantLabels(t *testing.T) {
	r := newTestRegistry(t)
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "go_goroutines"} {
		for _, l := range seriesLabels(t, r.Gatherer(), name) {
			if l["namespace"] != "demo" || l["pod"] != "web-0" {
				t.Errorf("%s labels %v lack the proxy's own labels", name, l)
			}
		}
		if len(seriesLabels(t, r.Gatherer(), name)) == 0 {
			t.Errorf("%s is not exported", name)
		}
	}
}

func TestNewRejectsBadConstantLabels(t *testing.T) {
	for _, name := range []string{"direction", "dst_pod", "status_code", "errno", "srv_name", "le", "__name__", "1pod", "pod-name", ""} {
		if _, err := New(map[string]string{name: "x"}); err == nil {
			t.Errorf("New accepted constant label %q", name)
		}
	}
	if _, err := New(nil); err != nil {
		t.Errorf("New(nil): %v", err)
	}
}

func TestHandlerServesTextFormat(t *testing.T) {
	r := newTestRegistry(t)
	r.Request(outboundEmoji).Response(200, "", time.Millisecond)
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "\nresponse_latency_ms_bucket{") {
		t.Errorf("status %d, body lacks response_latency_ms:\n%.500s", resp.StatusCode, body)
	}
}

func TestConcurrentRecording(t *testing.T) {
	r := newTestRegistry(t)
	const workers, perWorker = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			l := outboundEmoji
			l.Dst.Pod = fmt.Sprintf("emoji-%d", w%2) // two label sets, shared across workers
			tl := TCPLabels{Direction: DirectionOutbound, TargetAddr: l.TargetAddr}
			for i := range perWorker {
				r.Request(l).Response(200+300*(i%2), "", time.Millisecond)
				c := r.TCPOpen(tl)
				c.AddRead(1)
				c.Close("")
			}
		})
	}
	wg.Wait()
	if got := sumCounter(t, r.Gatherer(), "request_total"); got != workers*perWorker {
		t.Errorf("request_total sums to %v, want %d", got, workers*perWorker)
	}
	if got := sumCounter(t, r.Gatherer(), "response_total"); got != workers*perWorker {
		t.Errorf("response_total sums to %v, want %d", got, workers*perWorker)
	}
	if got := sumCounter(t, r.Gatherer(), "tcp_read_bytes_total"); got != workers*perWorker {
		t.Errorf("tcp_read_bytes_total sums to %v, want %d", got, workers*perWorker)
	}
	if got := testutil.ToFloat64(r.tcpOpenConnections); got != 0 {
		t.Errorf("tcp_open_connections = %v, want 0", got)
	}
}

func BenchmarkRecordRequest(b *testing.B) {
	r := newTestRegistry(b)
	b.ReportAllocs()
	for b.Loop() {
		r.Request(outboundEmoji).Response(200, "0", 3*time.Millisecond)
	}
}

func BenchmarkRecordRequestParallel(b *testing.B) {
	r := newTestRegistry(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Request(outboundEmoji).Response(200, "0", 3*time.Millisecond)
		}
	})
}

func BenchmarkTCPConnection(b *testing.B) {
	r := newTestRegistry(b)
	l := TCPLabels{Direction: DirectionOutbound, TargetAddr: "198.18.0.5:8080", TLS: TLSTrue}
	b.ReportAllocs()
	for b.Loop() {
		c := r.TCPOpen(l)
		c.AddRead(512)
		c.AddWrite(512)
		c.Close("")
	}
}

// seriesLabels returns the labels of every series of the named metric.
func seriesLabels(t *testing.T, g prometheus.Gatherer, name string) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, m := range gatherFamily(t, g, name).GetMetric() {
		l := make(map[string]string)
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		out = append(out, l)
	}
	return out
}

func onlyMetric(t *testing.T, g prometheus.Gatherer, name string) *dto.Metric {
	t.Helper()
	ms := gatherFamily(t, g, name).GetMetric()
	if len(ms) != 1 {
		t.Fatalf("%s has %d series, want 1", name, len(ms))
	}
	return ms[0]
}

func sumCounter(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	var sum float64
	for _, m := range gatherFamily(t, g, name).GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

func gatherFamily(t *testing.T, g prometheus.Gatherer, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return &dto.MetricFamily{}
}

func TestRouteRetryExposition(t *testing.T) {
	r := newTestRegistry(t)
	route := r.Route(RouteLabels{Direction: DirectionOutbound, Service: "demo/emoji", Port: 8080, RouteName: "demo/get-emoji"})
	route.Attempt(false, 503, "")
	route.Attempt(true, 200, "0")
	route.Retry(RetryAttempted)
	route.Retry(RetrySucceeded)
	route.Retry("invented") // ignored: the result label is a fixed set
	const want = `
# HELP route_actual_response_total Total attempts sent for a route (first attempts and retries) by their outcome.
# TYPE route_actual_response_total counter
route_actual_response_total{attempt="first",authority="emoji.demo.svc.cluster.local:8080",classification="failure",direction="outbound",dst_namespace="demo",dst_service="emoji",grpc_status="",namespace="demo",pod="web-0",route_name="demo/get-emoji",status_code="503",workload="web"} 1
route_actual_response_total{attempt="retry",authority="emoji.demo.svc.cluster.local:8080",classification="success",direction="outbound",dst_namespace="demo",dst_service="emoji",grpc_status="0",namespace="demo",pod="web-0",route_name="demo/get-emoji",status_code="200",workload="web"} 1
# HELP route_retry_total Retries of a route: attempted, succeeded, or not made because the budget was exhausted or the limit reached.
# TYPE route_retry_total counter
route_retry_total{authority="emoji.demo.svc.cluster.local:8080",direction="outbound",dst_namespace="demo",dst_service="emoji",namespace="demo",pod="web-0",result="attempted",route_name="demo/get-emoji",workload="web"} 1
route_retry_total{authority="emoji.demo.svc.cluster.local:8080",direction="outbound",dst_namespace="demo",dst_service="emoji",namespace="demo",pod="web-0",result="budget_exhausted",route_name="demo/get-emoji",workload="web"} 0
route_retry_total{authority="emoji.demo.svc.cluster.local:8080",direction="outbound",dst_namespace="demo",dst_service="emoji",namespace="demo",pod="web-0",result="limit_reached",route_name="demo/get-emoji",workload="web"} 0
route_retry_total{authority="emoji.demo.svc.cluster.local:8080",direction="outbound",dst_namespace="demo",dst_service="emoji",namespace="demo",pod="web-0",result="succeeded",route_name="demo/get-emoji",workload="web"} 1
`
	if err := testutil.GatherAndCompare(r.Gatherer(), strings.NewReader(want), "route_actual_response_total", "route_retry_total"); err != nil {
		t.Error(err)
	}
}

// BenchmarkCountAuthz is an inbound request's authorization count.
func BenchmarkCountAuthz(b *testing.B) {
	r := newTestRegistry(b)
	l := AuthzLabels{TargetAddr: "10.0.0.1:8080", TLS: TLSTrue, ClientID: "spiffe://cluster.local/ns/demo/sa/web", ServerName: "emoji", AuthzName: "web", RouteName: "default"}
	b.ReportAllocs()
	for b.Loop() {
		r.HTTPAuthz(l, true)
	}
}
