package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skeinmesh/skein/internal/controller/metricsapi"
)

func ptr(v float64) *float64 { return &v }

var (
	fakeStat = metricsapi.StatResponse{Kind: "workload", Since: "1m", Rows: []metricsapi.StatRow{
		{Namespace: "demo", Name: "web", Meshed: 2, Total: 3, Ready: new(1), TCPConnections: 7, Golden: metricsapi.Golden{
			RPS: 12.345, SuccessRate: ptr(0.9), LatencyP50: ptr(4.56), LatencyP95: ptr(38), LatencyP99: ptr(49.1)}},
		{Namespace: "demo", Name: "idle", Meshed: 0, Total: 1},
	}}
	fakePodStat = metricsapi.StatResponse{Kind: "pod", Since: "1m", Rows: []metricsapi.StatRow{
		{Namespace: "demo", Name: "web-0", Workload: "web", Meshed: 1, Total: 1, Ready: new(1), Golden: metricsapi.Golden{
			RPS: 12.345, SuccessRate: ptr(0.9), LatencyP50: ptr(4.56), LatencyP95: ptr(38), LatencyP99: ptr(49.1)}},
		{Namespace: "demo", Name: "web-1", Workload: "web", Meshed: 1, Total: 1, Ready: new(0)},
	}}
	fakeEdges = metricsapi.EdgesResponse{Since: "1m", Rows: []metricsapi.EdgeRow{
		{SrcNamespace: "demo", SrcWorkload: "web", DstNamespace: "demo", DstWorkload: "emoji", TLS: "true",
			ClientID: "spiffe://td/ns/demo/sa/web", ServerID: "spiffe://td/ns/demo/sa/emoji", RPS: 0.5, SuccessRate: ptr(1)},
		{SrcNamespace: "demo", SrcWorkload: "web", DstNamespace: "demo", DstWorkload: "legacy", TLS: "no_identity", RPS: 0.25, SuccessRate: ptr(0.5)},
	}}
	fakeRoutes = metricsapi.RoutesResponse{Kind: "service", Name: "emoji", Since: "1m", Rows: []metricsapi.RouteRow{
		{Route: "[default]", Authority: "emoji.demo.svc.cluster.local:8080", Golden: metricsapi.Golden{RPS: 3, SuccessRate: ptr(0.999)}},
		{Route: "demo/get-emoji", Authority: "emoji.demo.svc.cluster.local:8080",
			Golden:  metricsapi.Golden{RPS: 20, SuccessRate: ptr(0.99), LatencyP50: ptr(2)},
			Retries: metricsapi.Retries{ActualSuccessRate: ptr(0.8), RetryRPS: 3.5, RetryBudgetExhaustedRPS: 0.25, RetryLimitReachedRPS: 0.5}},
	}}
)

// fakeMetricsAPI answers like the controller's metrics API with canned
// rows and records the last query it got.
func fakeMetricsAPI(t *testing.T, lastQuery *string) http.Handler {
	t.Helper()
	mux := http.NewServeMux()
	answer := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			*lastQuery = r.URL.Query().Encode()
			json.NewEncoder(w).Encode(v)
		}
	}
	mux.HandleFunc("GET /api/v1/stat", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("kind") == metricsapi.KindPod {
			answer(fakePodStat)(w, r)
			return
		}
		answer(fakeStat)(w, r)
	})
	mux.Handle("GET /api/v1/edges", answer(fakeEdges))
	mux.Handle("GET /api/v1/routes", answer(fakeRoutes))
	return mux
}

func TestMetricsCommandsTables(t *testing.T) {
	var query string
	api := httptest.NewServer(fakeMetricsAPI(t, &query))
	t.Cleanup(api.Close)
	tests := []struct {
		name      string
		args      []string
		wantQuery string
		want      string
	}{
		{"stat workloads", []string{"stat"}, "kind=workload&namespace=&since=1m", `
NAMESPACE  NAME  MESHED  READY  SUCCESS  RPS   LATENCY_P50  LATENCY_P95  LATENCY_P99
demo       web   2/3     1/3    90.0%    12.3  4.6ms        38ms         49ms
demo       idle  0/1     -      -        -     -            -            -
`},
		{"stat wide in one namespace", []string{"stat", "deploy", "-n", "demo", "-o", "wide", "--since", "5m"}, "kind=workload&namespace=demo&since=5m", `
NAME  MESHED  READY  SUCCESS  RPS   LATENCY_P50  LATENCY_P95  LATENCY_P99  TCP_CONN
web   2/3     1/3    90.0%    12.3  4.6ms        38ms         49ms         7
idle  0/1     -      -        -     -            -            -            0
`},
		{"stat services", []string{"stat", "svc", "-n", "demo"}, "kind=service&namespace=demo&since=1m", ""},
		{"stat pods", []string{"stat", "po", "-n", "demo"}, "kind=pod&namespace=demo&since=1m", `
NAME   WORKLOAD  MESHED  READY  SUCCESS  RPS   LATENCY_P50  LATENCY_P95  LATENCY_P99
web-0  web       1/1     1/1    90.0%    12.3  4.6ms        38ms         49ms
web-1  web       1/1     0/1    -        -     -            -            -
`},
		{"edges", []string{"edges"}, "namespace=&since=1m", `
SRC  DST     SRC_NS  DST_NS  SECURED           SUCCESS  RPS
web  emoji   demo    demo    yes               100.0%   0.50
web  legacy  demo    demo    no (no_identity)  50.0%    0.25
`},
		{"edges wide", []string{"edges", "-o", "wide"}, "namespace=&since=1m", `
SRC  DST     SRC_NS  DST_NS  SECURED           SUCCESS  RPS   CLIENT_ID                   SERVER_ID
web  emoji   demo    demo    yes               100.0%   0.50  spiffe://td/ns/demo/sa/web  spiffe://td/ns/demo/sa/emoji
web  legacy  demo    demo    no (no_identity)  50.0%    0.25  -                           -
`},
		{"routes of a service", []string{"routes", "service/emoji", "-n", "demo"}, "namespace=demo&service=emoji&since=1m", `
ROUTE           AUTHORITY                          SUCCESS  ACTUAL  RPS   RETRY_RPS  LATENCY_P50  LATENCY_P95  LATENCY_P99
[default]       emoji.demo.svc.cluster.local:8080  99.9%    -       3.00  -          -            -            -
demo/get-emoji  emoji.demo.svc.cluster.local:8080  99.0%    80.0%   20.0  3.50       2.0ms        -            -
`},
		{"routes wide", []string{"routes", "svc/emoji", "-o", "wide"}, "namespace=&service=emoji&since=1m", `
ROUTE           AUTHORITY                          SUCCESS  ACTUAL  RPS   RETRY_RPS  LATENCY_P50  LATENCY_P95  LATENCY_P99  BUDGET_OUT  LIMIT
[default]       emoji.demo.svc.cluster.local:8080  99.9%    -       3.00  -          -            -            -            -           -
demo/get-emoji  emoji.demo.svc.cluster.local:8080  99.0%    80.0%   20.0  3.50       2.0ms        -            -            0.25        0.50
`},
		{"routes of a workload", []string{"routes", "web"}, "namespace=&since=1m&workload=web", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, append(tt.args, "--api", api.URL)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if query != tt.wantQuery {
				t.Errorf("API query %q, want %q", query, tt.wantQuery)
			}
			if tt.want != "" && out != strings.TrimPrefix(tt.want, "\n") {
				t.Errorf("output:\n%s\nwant:\n%s", out, strings.TrimPrefix(tt.want, "\n"))
			}
		})
	}
}

func TestMetricsCommandsJSONOverUnixSocket(t *testing.T) {
	var query string
	socket := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: fakeMetricsAPI(t, &query)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	for _, api := range []string{"unix:" + socket, socket} {
		out, err := run(t, "edges", "-o", "json", "--api", api)
		if err != nil {
			t.Fatalf("--api %s: %v\n%s", api, err, out)
		}
		var got metricsapi.EdgesResponse
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("-o json is not an EdgesResponse: %v\n%s", err, out)
		}
		if len(got.Rows) != 2 || got.Rows[0].ClientID != fakeEdges.Rows[0].ClientID || *got.Rows[1].SuccessRate != 0.5 {
			t.Errorf("-o json rows %+v, want the API's rows", got.Rows)
		}
		for _, field := range []string{`"src_workload"`, `"client_id"`, `"server_id"`, `"tls"`, `"success_rate"`, `"rps"`} {
			if !strings.Contains(out, field) {
				t.Errorf("-o json lacks documented field %s:\n%s", field, out)
			}
		}
	}
}

func TestMetricsCommandsErrors(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]string{"error": "cannot reach Prometheus: connection refused"})
	}))
	t.Cleanup(api.Close)
	missing := "unix:" + filepath.Join(t.TempDir(), "none.sock")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"stat", "--api", missing}, "cannot reach the controller's metrics API at " + missing + ": is `skein up` running?"},
		{[]string{"stat", "--api", api.URL}, "cannot reach Prometheus: connection refused (HTTP 503)"},
		{[]string{"stat", "replicasets", "--api", api.URL}, `unknown kind "replicasets"`},
		{[]string{"edges", "-o", "yaml", "--api", api.URL}, `unknown output format "yaml"`},
		{[]string{"routes", "namespace/demo", "--api", api.URL}, "want WORKLOAD, workload/NAME or service/NAME"},
		{[]string{"stat", "--api", "ftp://x"}, `--api "ftp://x"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := run(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
