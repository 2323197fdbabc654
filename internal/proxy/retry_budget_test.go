package proxy

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/routes"
)

// An always-failing backend at 50 requests per second for 5 seconds: the
// retries stay within the budget (20% of the requests plus 10 per second,
// the reserve renewed once per TTL), the budget is used rather than
// refused, and the client fails exactly as often as the backend does.
func TestRetryBudgetBoundsRetriesOfAnAlwaysFailingBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("5 seconds of traffic")
	}
	var backendCalls atomic.Int64
	addr := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		backendCalls.Add(1)
		w.WriteHeader(503)
	}))
	budget := routes.Budget{Ratio: 0.2, MinPerSecond: 10, TTL: time.Second}
	rule := retryOn5xx()
	rule.Retry.Limit = 2
	proxy, reg := retryProxy(t, addr, rule, budget)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	const rps, seconds = 50, 5
	var failed, answered atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rps)
	start := time.Now()
	for range rps * seconds {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _ := send(t, client, proxy, "GET", nil)
			answered.Add(1)
			if status >= 500 {
				failed.Add(1)
			}
		}()
	}
	tick.Stop()
	wg.Wait()
	elapsed := time.Since(start)

	requests := answered.Load()
	retries := backendCalls.Load() - requests
	// Within any TTL window: retries ≤ Ratio × its requests + MinPerSecond
	// × TTL; the window slides in tenths of the TTL, so over the run the
	// reserve is renewed at most once per 0.9 TTL, plus the first.
	windows := float64(int(elapsed.Seconds()/(0.9*budget.TTL.Seconds())) + 1)
	bound := budget.Ratio*float64(requests) + float64(budget.MinPerSecond)*budget.TTL.Seconds()*windows
	t.Logf("%d requests in %v, %d retries (%.1f%% of requests; bound %.0f)", requests, elapsed.Round(time.Millisecond),
		retries, 100*float64(retries)/float64(requests), bound)
	if float64(retries) > bound {
		t.Errorf("%d retries for %d requests, over the budget's %.0f", retries, requests, bound)
	}
	if float64(retries) < budget.Ratio*float64(requests) {
		t.Errorf("%d retries for %d requests: the budget's 20%% was not even used", retries, requests)
	}
	// Every attempt failed at the backend; so did every request at the client.
	if failed.Load() != requests {
		t.Errorf("client failure rate %d/%d, want the backend's 100%%", failed.Load(), requests)
	}
	labels := func(result string) map[string]string {
		return map[string]string{"route_name": "test/echo", "result": result}
	}
	if got := metricSum(t, reg, "route_retry_total", labels("attempted")); got != float64(retries) {
		t.Errorf("route_retry_total{result=attempted} = %v, want the %d retries the backend saw", got, retries)
	}
	if got := metricSum(t, reg, "route_retry_total", labels("budget_exhausted")); got == 0 {
		t.Error("route_retry_total{result=budget_exhausted} = 0, want the refused retries counted")
	}
	if got := metricSum(t, reg, "route_retry_total", labels("succeeded")); got != 0 {
		t.Errorf("route_retry_total{result=succeeded} = %v, want 0", got)
	}
	actual := metricSum(t, reg, "route_actual_response_total", map[string]string{"route_name": "test/echo", "classification": "failure"})
	if actual != float64(backendCalls.Load()) {
		t.Errorf("route_actual_response_total failures = %v, want every attempt (%d)", actual, backendCalls.Load())
	}
}
