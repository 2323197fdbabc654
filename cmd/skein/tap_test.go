package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/tap"
)

func grpcCode(c int) *int { return &c }

var (
	tapTime   = time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	tapClient = tap.Peer{Address: "10.0.0.9:41000", Identity: "spiffe://td/ns/demo/sa/bot", Namespace: "demo", Workload: "bot", Pod: "bot-0"}
	tapWeb    = tap.Peer{Address: "10.0.0.1:8080", Namespace: "demo", Workload: "web", Pod: "web-0"}
	// fakeTapEvents: two POST /api/vote (one fails), one GET /, a drop
	// report and an error.
	fakeTapEvents = []tap.Event{
		{Kind: tap.KindRequest, Time: tapTime, Proxy: "demo/web-0", Stream: 1, Direction: "inbound", Source: tapClient, Dest: tapWeb,
			Method: "POST", Authority: "web.demo:8080", Path: "/api/vote", Headers: []tap.Header{{Name: "X-User", Value: "ann"}, {Name: "authorization", Value: tap.Redacted}},
			Body: `{"choice":"a"}`},
		{Kind: tap.KindResponse, Time: tapTime, Proxy: "demo/web-0", Stream: 1, Direction: "inbound", Source: tapClient, Dest: tapWeb, Status: 200, LatencyMs: 1.5},
		{Kind: tap.KindEnd, Time: tapTime, Proxy: "demo/web-0", Stream: 1, Direction: "inbound", Source: tapClient, Dest: tapWeb, Status: 200, DurationMs: 2.25, ResponseBytes: 12, GRPCStatus: grpcCode(0)},
		{Kind: tap.KindRequest, Time: tapTime, Proxy: "demo/web-0", Stream: 2, Direction: "inbound", Source: tapClient, Dest: tapWeb, Method: "POST", Path: "/api/vote?choice=b"},
		{Kind: tap.KindResponse, Time: tapTime, Proxy: "demo/web-0", Stream: 2, Direction: "inbound", Source: tapClient, Dest: tapWeb, Status: 503, LatencyMs: 40},
		{Kind: tap.KindEnd, Time: tapTime, Proxy: "demo/web-0", Stream: 2, Direction: "inbound", Source: tapClient, Dest: tapWeb, Status: 503, DurationMs: 41},
		{Kind: tap.KindDropped, Time: tapTime, Proxy: "demo/web-0", Dropped: 5},
		{Kind: tap.KindRequest, Time: tapTime, Proxy: "demo/web-0", Stream: 3, Direction: "outbound", Source: tapWeb,
			Dest:   tap.Peer{Address: "10.0.0.2:9090", Identity: "spiffe://td/ns/demo/sa/voting", Namespace: "demo", Workload: "voting"},
			Method: "GET", Path: "/", Route: "demo/root"},
		{Kind: tap.KindEnd, Time: tapTime, Proxy: "demo/web-0", Stream: 3, Direction: "outbound", Status: 0, DurationMs: 0.25, Error: "connection refused"},
		{Kind: tap.KindError, Time: tapTime, Proxy: "demo/web-1", Error: "the proxy does not serve tap"},
	}
)

// fakeTapAPI streams fakeTapEvents and ends, recording the query.
func fakeTapAPI(t *testing.T, query *string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+tap.APIPath, func(w http.ResponseWriter, r *http.Request) {
		*query = r.URL.Query().Encode()
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for _, e := range fakeTapEvents {
			enc.Encode(e)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestTapOutput(t *testing.T) {
	var query string
	api := fakeTapAPI(t, &query)
	out, err := run(t, "tap", "deploy/web", "-n", "demo", "--path", "/api", "--method", "POST", "--to", "svc/voting", "--max-rps", "5", "--header", "x-user", "--api", api.URL)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if want := "maxRps=5&method=POST&namespace=demo&path=%2Fapi&resource=deploy%2Fweb&to=svc%2Fvoting"; query != want {
		t.Errorf("query %q, want %q", query, want)
	}
	want := `req id=demo/web-0:1 proxy=in src=10.0.0.9:41000 dst=10.0.0.1:8080 tls=true :method=POST :authority=web.demo:8080 :path=/api/vote x-user="ann" body="{\"choice\":\"a\"}"
rsp id=demo/web-0:1 proxy=in src=10.0.0.9:41000 dst=10.0.0.1:8080 tls=true :status=200 latency=1.5ms x-user=-
end id=demo/web-0:1 proxy=in src=10.0.0.9:41000 dst=10.0.0.1:8080 tls=true grpc-status=OK duration=2.2ms response-length=12B
req id=demo/web-0:2 proxy=in src=10.0.0.9:41000 dst=10.0.0.1:8080 tls=true :method=POST :authority= :path=/api/vote?choice=b x-user=-
rsp id=demo/web-0:2 proxy=in src=10.0.0.9:41000 dst=10.0.0.1:8080 tls=true :status=503 latency=40ms x-user=-
end id=demo/web-0:2 proxy=in src=10.0.0.9:41000 dst=10.0.0.1:8080 tls=true duration=41ms response-length=0B
dropped proxy=demo/web-0 count=5
req id=demo/web-0:3 proxy=out src=10.0.0.1:8080 dst=10.0.0.2:9090 tls=true :method=GET :authority= :path=/ route=demo/root x-user=-
end id=demo/web-0:3 proxy=out src= dst= tls=false duration=250µs response-length=0B error="connection refused"
error proxy=demo/web-1 error="the proxy does not serve tap"
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}

	out, err = run(t, "tap", "deploy/web", "-n", "demo", "-o", "wide", "--api", api.URL)
	if err != nil {
		t.Fatal(err)
	}
	if first := strings.SplitN(out, "\n", 2)[0]; !strings.Contains(first, "src_res=demo/bot dst_res=demo/web src_id=spiffe://td/ns/demo/sa/bot dst_id=- :method=POST") {
		t.Errorf("wide: %s", first)
	}

	out, err = run(t, "tap", "deploy/web", "-o", "json", "--api", api.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(query, "namespace=default") {
		t.Errorf("default namespace: %s", query)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(fakeTapEvents) {
		t.Fatalf("%d JSON lines, want %d", len(lines), len(fakeTapEvents))
	}
	var first tap.Event
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Path != "/api/vote" || first.Source.Identity != tapClient.Identity {
		t.Errorf("first JSON event %+v (%v)", first, err)
	}
	if _, err := run(t, "tap", "deploy/web", "-o", "yaml", "--api", api.URL); err == nil {
		t.Error("-o yaml accepted")
	}
}

func TestTopJSON(t *testing.T) {
	var query string
	api := fakeTapAPI(t, &query)
	out, err := run(t, "top", "deploy/web", "-n", "demo", "-o", "json", "--api", api.URL)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got TopResponse
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := []TopRow{
		{Source: "demo/bot", Destination: "demo/web", Method: "POST", Path: "/api/vote", Count: 2, Successes: 1, SuccessRate: 0.5, BestMs: 1.5, WorstMs: 40, LastMs: 40},
		{Source: "demo/web", Destination: "demo/voting", Method: "GET", Path: "/", Route: "demo/root", Count: 1, Successes: 0, SuccessRate: 0, BestMs: 0.25, WorstMs: 0.25, LastMs: 0.25},
	}
	if len(got.Rows) != len(want) {
		t.Fatalf("rows %+v, want %+v", got.Rows, want)
	}
	for i := range want {
		if got.Rows[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, got.Rows[i], want[i])
		}
	}
	if got.Dropped != 5 || len(got.Errors) != 1 || got.Resource != "deploy/web" || got.Namespace != "demo" {
		t.Errorf("snapshot: %+v", got)
	}
}

func TestTopTableWhenNotATerminal(t *testing.T) {
	var query string
	api := fakeTapAPI(t, &query)
	out, err := run(t, "top", "deploy/web", "-n", "demo", "--api", api.URL)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("escape sequences when not on a terminal: %q", out)
	}
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "skein top deploy/web") || !strings.HasSuffix(lines[0], "dropped=5") {
		t.Errorf("title: %q", lines[0])
	}
	want := `error: demo/web-1: the proxy does not serve tap
SOURCE    DESTINATION  METHOD  PATH       COUNT  BEST   WORST  LAST   SUCCESS
demo/bot  demo/web     POST    /api/vote  2      1.5ms  40ms   40ms   50.0%
demo/web  demo/voting  GET     demo/root  1      250µs  250µs  250µs  0.0%

`
	if got := strings.Join(lines[1:], "\n"); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}
