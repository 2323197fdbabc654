package metricsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/skeinmesh/skein/internal/proxy/metrics"
)

const (
	webID   = "spiffe://skein.test/ns/demo/sa/web"
	emojiID = "spiffe://skein.test/ns/demo/sa/emoji"
)

// fakeProxy is one proxy's real metrics registry served on loopback. Its
// handler and the traffic recorder share a lock, so every scrape sees whole
// batches of traffic and the ratios the test checks are exact.
type fakeProxy struct {
	reg  *metrics.Registry
	addr string
}

func startFakeProxy(t *testing.T, mu *sync.Mutex, labels map[string]string) *fakeProxy {
	t.Helper()
	reg, err := metrics.New(labels)
	if err != nil {
		t.Fatal(err)
	}
	h := reg.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return &fakeProxy{reg: reg, addr: strings.TrimPrefix(srv.URL, "http://")}
}

// demoTraffic is one batch of the test's known traffic:
//   - an unmeshed client calls web: 9 successes at 5 ms, 1 failure (500) at 50 ms;
//   - web calls emoji over mTLS: 4 gRPC successes at 2 ms, seen by both sides;
//   - web calls legacy (unmeshed): 1 success.
func demoTraffic(web, emoji *fakeProxy) {
	webInbound := metrics.HTTPLabels{
		Direction: metrics.DirectionInbound, Authority: "web.demo.svc.cluster.local:8080",
		TargetAddr: "10.0.0.1:8080", TLS: metrics.TLSNoIdentity,
		Dst: metrics.DstLabels{Namespace: "demo", Service: "web", Workload: "web", Pod: "web-0"},
	}
	for range 9 {
		web.reg.Request(webInbound).Response(200, "", 5*time.Millisecond)
	}
	web.reg.Request(webInbound).Response(500, "", 50*time.Millisecond)

	emojiDst := metrics.DstLabels{Namespace: "demo", Service: "emoji", Workload: "emoji", Pod: "emoji-0"}
	webToEmoji := metrics.HTTPLabels{
		Direction: metrics.DirectionOutbound, Authority: "emoji.demo.svc.cluster.local:8080",
		TargetAddr: "10.0.0.2:8080", TLS: metrics.TLSTrue, ServerID: emojiID, RouteName: "get-emoji", Dst: emojiDst,
	}
	emojiInbound := metrics.HTTPLabels{
		Direction: metrics.DirectionInbound, Authority: "emoji.demo.svc.cluster.local:8080",
		TargetAddr: "10.0.0.2:8080", TLS: metrics.TLSTrue, ClientID: webID, Dst: emojiDst,
	}
	for range 4 {
		web.reg.Request(webToEmoji).Response(200, "0", 2*time.Millisecond)
		emoji.reg.Request(emojiInbound).Response(200, "0", 2*time.Millisecond)
	}
	// web's retry layer on that route: of the 4 calls' first attempts one
	// failed with UNAVAILABLE and was retried, successfully (the clients
	// saw 4 successes; emoji's inbound side is not part of this).
	route := web.reg.Route(metrics.RouteLabels{Direction: metrics.DirectionOutbound, Service: "demo/emoji", Port: 8080, RouteName: "get-emoji"})
	for range 3 {
		route.Attempt(false, 200, "0")
	}
	route.Attempt(false, 200, "14")
	route.Retry(metrics.RetryAttempted)
	route.Attempt(true, 200, "0")
	route.Retry(metrics.RetrySucceeded)

	webToLegacy := metrics.HTTPLabels{
		Direction: metrics.DirectionOutbound, Authority: "legacy.demo.svc.cluster.local:80",
		TargetAddr: "10.0.0.3:80", TLS: metrics.TLSNoIdentity,
		Dst: metrics.DstLabels{Namespace: "demo", Service: "legacy", Workload: "legacy", Pod: "legacy-0"},
	}
	web.reg.Request(webToLegacy).Response(200, "", time.Millisecond)
}

// A batch of traffic every batchInterval: web receives webPerBatch
// requests and calls emoji webToEmojiPerBatch times.
const (
	batchInterval      = 200 * time.Millisecond
	webPerBatch        = 10
	webToEmojiPerBatch = 4
)

// The API's window (since=5s) and startPrometheus's scrape interval.
const (
	apiWindow      = 5 * time.Second
	scrapeInterval = time.Second
)

// batchLog is when each batch of traffic was recorded: what was actually
// sent, which on a busy machine may be less than one per batchInterval.
type batchLog struct {
	mu    *sync.Mutex // the recorder's and the scrapes' lock
	times []time.Time
}

// rate is how many requests per second batches of perBatch made over the
// API's window that ends at end.
func (b *batchLog) rate(end time.Time, perBatch int) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, at := range b.times {
		if at.After(end.Add(-apiWindow)) && !at.After(end) {
			n++
		}
	}
	return float64(n*perBatch) / apiWindow.Seconds()
}

func TestAPIAgainstPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus and waits for scrapes")
	}
	prometheusBinary(t)

	var mu sync.Mutex
	web := startFakeProxy(t, &mu, map[string]string{"namespace": "demo", "workload": "web", "pod": "web-0", "serviceaccount": "web"})
	emoji := startFakeProxy(t, &mu, map[string]string{"namespace": "demo", "workload": "emoji", "pod": "emoji-0", "serviceaccount": "emoji"})
	web.reg.TCPOpen(metrics.TCPLabels{Direction: metrics.DirectionInbound, TargetAddr: "10.0.0.1:8080", TLS: metrics.TLSNoIdentity})
	web.reg.TCPOpen(metrics.TCPLabels{Direction: metrics.DirectionInbound, TargetAddr: "10.0.0.1:8080", TLS: metrics.TLSNoIdentity})
	emoji.reg.TCPOpen(metrics.TCPLabels{Direction: metrics.DirectionInbound, TargetAddr: "10.0.0.2:8080", TLS: metrics.TLSTrue, ClientID: webID})

	promURL := startPrometheus(t, []string{web.addr, emoji.addr})

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	sent := &batchLog{mu: &mu}
	go func() {
		defer close(done)
		tick := time.NewTicker(batchInterval)
		defer tick.Stop()
		for {
			mu.Lock()
			demoTraffic(web, emoji)
			sent.times = append(sent.times, time.Now())
			mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { stop(); <-done })

	inventory := StaticInventory{
		{Namespace: "demo", Name: "web", Replicas: 2, Meshed: 2, Ready: 2, ServiceAccount: "web"},
		{Namespace: "demo", Name: "emoji", Replicas: 3, Meshed: 1, Ready: 1, ServiceAccount: "emoji",
			Instances: []InstanceInfo{{"emoji-0", true, true}, {"emoji-1", false, false}, {"emoji-2", false, false}}},
		{Namespace: "demo", Name: "idle", Replicas: 1, Meshed: 0, Ready: 0, ServiceAccount: "idle",
			Instances: []InstanceInfo{{"idle-0", false, false}}},
	}
	api := httptest.NewServer(NewHandler(Config{PrometheusURL: promURL, Inventory: inventory}))
	t.Cleanup(api.Close)

	// Wait until Prometheus has scraped enough for every answer to have
	// data, and a whole window of it: before, the window holds less traffic
	// than was sent in it (the series did not exist yet).
	var workloads StatResponse
	var workloadsAt time.Time
	deadline := time.Now().Add(20 * time.Second)
	for {
		getJSON(t, api.URL+"/api/v1/stat?kind=workload&namespace=demo&since=5s", &workloads)
		workloadsAt = time.Now()
		full := fullWindowScraped(t, promURL)
		if r := findStat(workloads.Rows, "web"); full && r != nil && r.RPS > 0 && r.LatencyP99 != nil {
			if r := findStat(workloads.Rows, "emoji"); r != nil && r.RPS > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no traffic in the API's answer after 20s: %+v", workloads)
		}
		time.Sleep(500 * time.Millisecond)
	}

	t.Run("workloads", func(t *testing.T) {
		webRow := findStat(workloads.Rows, "web")
		checkRate(t, "web success_rate", webRow.SuccessRate, 0.9)
		checkRPS(t, "web rps", webRow.RPS, sent.rate(workloadsAt, webPerBatch), webPerBatch)
		checkBetween(t, "web p50", webRow.LatencyP50, 4, 5)
		checkBetween(t, "web p99", webRow.LatencyP99, 40, 50)
		if webRow.Meshed != 2 || webRow.Total != 2 || webRow.TCPConnections != 2 {
			t.Errorf("web meshed %d/%d tcp %d, want 2/2 from the inventory and 2 connections", webRow.Meshed, webRow.Total, webRow.TCPConnections)
		}
		emojiRow := findStat(workloads.Rows, "emoji")
		checkRate(t, "emoji success_rate", emojiRow.SuccessRate, 1)
		if emojiRow.Meshed != 1 || emojiRow.Total != 3 {
			t.Errorf("emoji meshed %d/%d, want 1/3", emojiRow.Meshed, emojiRow.Total)
		}
		checkReady(t, "web", webRow.Ready, 2)
		checkReady(t, "emoji", emojiRow.Ready, 1)
		idle := findStat(workloads.Rows, "idle")
		if idle == nil || idle.SuccessRate != nil || idle.RPS != 0 || idle.Total != 1 {
			t.Errorf("idle workload (inventory only) = %+v, want a row with total 1 and no traffic", idle)
		} else {
			checkReady(t, "idle", idle.Ready, 0)
		}
	})

	t.Run("pods", func(t *testing.T) {
		var pods StatResponse
		getJSON(t, api.URL+"/api/v1/stat?kind=pod&namespace=demo&since=5s", &pods)
		byName := map[string]StatRow{}
		for _, r := range pods.Rows {
			byName[r.Name] = r
		}
		if len(byName) != 5 {
			t.Errorf("pod rows %+v, want web-0, emoji-0..2 and idle-0", pods.Rows)
		}
		// web's inventory lists no replicas: its pod comes from
		// Prometheus, meshed (only proxies report), readiness unknown.
		if web := byName["web-0"]; web.Workload != "web" || web.Meshed != 1 || web.Total != 1 || web.Ready != nil || web.RPS == 0 {
			t.Errorf("web-0 = %+v, want workload web, meshed 1/1, ready unknown, with traffic", web)
		} else {
			checkRate(t, "web-0 success_rate", web.SuccessRate, 0.9)
		}
		if e := byName["emoji-0"]; e.Workload != "emoji" || e.Meshed != 1 || e.RPS == 0 {
			t.Errorf("emoji-0 = %+v, want workload emoji, meshed, with traffic", e)
		} else {
			checkReady(t, "emoji-0", e.Ready, 1)
		}
		if e := byName["emoji-1"]; e.Workload != "emoji" || e.Meshed != 0 || e.Total != 1 || e.SuccessRate != nil {
			t.Errorf("emoji-1 = %+v, want workload emoji, meshed 0/1, no traffic", e)
		} else {
			checkReady(t, "emoji-1", e.Ready, 0)
		}
	})

	t.Run("services", func(t *testing.T) {
		var services StatResponse
		getJSON(t, api.URL+"/api/v1/stat?kind=service&namespace=demo&since=5s", &services)
		emojiRow := findStat(services.Rows, "emoji")
		if emojiRow == nil {
			t.Fatalf("no emoji service row: %+v", services.Rows)
		}
		checkRate(t, "emoji service success_rate", emojiRow.SuccessRate, 1)
		if emojiRow.Meshed != 1 || emojiRow.Total != 1 {
			t.Errorf("emoji service meshed %d/%d, want 1/1", emojiRow.Meshed, emojiRow.Total)
		}
		if legacy := findStat(services.Rows, "legacy"); legacy == nil || legacy.Meshed != 0 || legacy.Total != 1 {
			t.Errorf("legacy service = %+v, want meshed 0/1", legacy)
		}
		if emojiRow.Ready != nil {
			t.Errorf("emoji service ready = %d, want null (readiness is the workloads')", *emojiRow.Ready)
		}
	})

	t.Run("namespaces", func(t *testing.T) {
		var namespaces StatResponse
		getJSON(t, api.URL+"/api/v1/stat?kind=namespace&since=5s", &namespaces)
		demo := findStat(namespaces.Rows, "demo")
		if demo == nil {
			t.Fatalf("no demo namespace row: %+v", namespaces.Rows)
		}
		// A mix of web's 0.9 and emoji's 1.0, weighted by their rates (13/14
		// nominally). The two proxies are scraped at different moments, so
		// rate()'s extrapolation weighs them slightly differently: only
		// check that both count.
		checkBetween(t, "demo success_rate", demo.SuccessRate, 0.905, 0.96)
		if demo.Meshed != 3 || demo.Total != 6 {
			t.Errorf("demo meshed %d/%d, want 3/6 (the inventory's sum)", demo.Meshed, demo.Total)
		}
		checkReady(t, "demo", demo.Ready, 3)
	})

	t.Run("edges", func(t *testing.T) {
		var edges EdgesResponse
		getJSON(t, api.URL+"/api/v1/edges?namespace=demo&since=5s", &edges)
		edgesAt := time.Now()
		var toEmoji, toLegacy *EdgeRow
		for i, e := range edges.Rows {
			switch {
			case e.SrcWorkload == "web" && e.DstWorkload == "emoji":
				toEmoji = &edges.Rows[i]
			case e.SrcWorkload == "web" && e.DstWorkload == "legacy":
				toLegacy = &edges.Rows[i]
			}
		}
		if toEmoji == nil || toLegacy == nil {
			t.Fatalf("edges %+v, want web→emoji and web→legacy", edges.Rows)
		}
		if toEmoji.ClientID != webID || toEmoji.ServerID != emojiID || toEmoji.TLS != "true" {
			t.Errorf("web→emoji identities client=%q server=%q tls=%q, want %q %q true", toEmoji.ClientID, toEmoji.ServerID, toEmoji.TLS, webID, emojiID)
		}
		checkRate(t, "web→emoji success_rate", toEmoji.SuccessRate, 1)
		checkRPS(t, "web→emoji rps", toEmoji.RPS, sent.rate(edgesAt, webToEmojiPerBatch), webToEmojiPerBatch)
		if toLegacy.ClientID != "" || toLegacy.ServerID != "" || toLegacy.TLS != "no_identity" {
			t.Errorf("web→legacy = %+v, want no identities and tls no_identity", toLegacy)
		}
	})

	t.Run("routes", func(t *testing.T) {
		var routes RoutesResponse
		getJSON(t, api.URL+"/api/v1/routes?workload=web&namespace=demo&since=5s", &routes)
		if len(routes.Rows) != 1 || routes.Rows[0].Route != DefaultRoute || routes.Rows[0].Authority != "web.demo.svc.cluster.local:8080" {
			t.Fatalf("web routes %+v, want one [default] route for web's authority", routes.Rows)
		}
		checkRate(t, "web [default] success_rate", routes.Rows[0].SuccessRate, 0.9)

		getJSON(t, api.URL+"/api/v1/routes?service=emoji&namespace=demo&since=5s", &routes)
		if len(routes.Rows) != 1 || routes.Rows[0].Route != "get-emoji" {
			t.Fatalf("emoji service routes %+v, want get-emoji", routes.Rows)
		}
		checkBetween(t, "get-emoji p50", routes.Rows[0].LatencyP50, 1, 2)
		// Effective (the clients' 4 successes of 4) against actual (3 of
		// the 4 first attempts), and one retry per batch.
		checkRate(t, "get-emoji effective success_rate", routes.Rows[0].SuccessRate, 1)
		checkRate(t, "get-emoji actual_success_rate", routes.Rows[0].ActualSuccessRate, 0.75)
		checkRPS(t, "get-emoji retry_rps", routes.Rows[0].RetryRPS, sent.rate(time.Now(), 1), 1)
		if routes.Rows[0].RetryBudgetExhaustedRPS != 0 || routes.Rows[0].RetryLimitReachedRPS != 0 {
			t.Errorf("get-emoji budget exhausted %v, limit reached %v per second; want none", routes.Rows[0].RetryBudgetExhaustedRPS, routes.Rows[0].RetryLimitReachedRPS)
		}
	})
}

// fullWindowScraped reports whether Prometheus has a whole window of
// samples (one per scrape interval) of every response_total series.
func fullWindowScraped(t *testing.T, promURL string) bool {
	t.Helper()
	q := fmt.Sprintf("min(count_over_time(response_total[%s]))", model.Duration(apiWindow))
	resp, err := http.Get(promURL + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Data.Result) == 0 {
		return false
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	n, _ := strconv.ParseFloat(s, 64)
	return n >= float64(apiWindow/scrapeInterval)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		_ = json.NewDecoder(resp.Body).Decode(&e)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, e.Error)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decoding: %v", url, err)
	}
}

func findStat(rows []StatRow, name string) *StatRow {
	for i := range rows {
		if rows[i].Name == name {
			return &rows[i]
		}
	}
	return nil
}

func checkRate(t *testing.T, what string, got *float64, want float64) {
	t.Helper()
	if got == nil || math.Abs(*got-want) > 0.005 {
		t.Errorf("%s = %v, want %.3f", what, deref(got), want)
	}
}

func checkBetween(t *testing.T, what string, got *float64, lo, hi float64) {
	t.Helper()
	if got == nil || *got < lo || *got > hi {
		t.Errorf("%s = %v, want within [%g, %g]", what, deref(got), lo, hi)
	}
}

// checkRPS wants the rate the API reports to be the rate that was sent
// over its window, within what the measurement can resolve. rate() over the
// window divides the increase between the first and last scrapes in it by
// the time between them, at least apiWindow - 2*scrapeInterval (3 s); each
// scrape sees whole batches, so that increase is off by at most one batch
// at each end. sent's own count over the window is off by at most one
// batch too, which the same bound covers.
func checkRPS(t *testing.T, what string, got, sent float64, perBatch int) {
	t.Helper()
	tolerance := 2 * float64(perBatch) / (apiWindow - 2*scrapeInterval).Seconds()
	t.Logf("%s = %.2f, sent %.2f, tolerance %.2f", what, got, sent, tolerance)
	if sent <= 0 || math.Abs(got-sent) > tolerance {
		t.Errorf("%s = %.2f, want the %.2f sent within %.2f", what, got, sent, tolerance)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// checkReady fails unless a row's ready count is known and want.
func checkReady(t *testing.T, row string, got *int, want int) {
	t.Helper()
	if got == nil || *got != want {
		t.Errorf("%s ready = %v, want %d", row, fmtCount(got), want)
	}
}

func fmtCount(n *int) string {
	if n == nil {
		return "null"
	}
	return strconv.Itoa(*n)
}
