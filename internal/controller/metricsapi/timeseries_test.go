package metricsapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeRangePrometheus answers query_range with one series per query, its
// value chosen by what the query asks for, at every step of the range
// except the first (no traffic yet there), and records the ranges asked.
type fakeRangePrometheus struct {
	mu     sync.Mutex
	asked  []string     // query, start, end, step
	values []queryValue // the last whose part the query contains wins
}

type queryValue struct {
	part  string
	value float64
}

func (f *fakeRangePrometheus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/query_range" {
		http.Error(w, "not here", http.StatusNotFound)
		return
	}
	r.ParseForm()
	q := r.Form.Get("query")
	start, _ := strconv.ParseFloat(r.Form.Get("start"), 64)
	end, _ := strconv.ParseFloat(r.Form.Get("end"), 64)
	step, _ := strconv.ParseFloat(r.Form.Get("step"), 64)
	f.mu.Lock()
	f.asked = append(f.asked, fmt.Sprintf("%s %v %v %v", q, start, end, step))
	f.mu.Unlock()
	value := -1.0
	for _, qv := range f.values {
		if strings.Contains(q, qv.part) {
			value = qv.value
		}
	}
	var samples []string
	for t := start + step; t <= end; t += step {
		samples = append(samples, fmt.Sprintf(`[%s,"%v"]`, strconv.FormatFloat(t, 'f', -1, 64), value))
	}
	fmt.Fprintf(w, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[%s]}]}}`, strings.Join(samples, ","))
}

func TestTimeseriesJoinsTheRangeQueriesByTime(t *testing.T) {
	prom := &fakeRangePrometheus{values: []queryValue{
		{`rate(response_total{`, 4},
		{`classification="success"`, 3},
		{`histogram_quantile(0.5,`, 10},
		{`histogram_quantile(0.95,`, 20},
		{`histogram_quantile(0.99,`, 40},
	}}
	promSrv := httptest.NewServer(prom)
	t.Cleanup(promSrv.Close)
	api := httptest.NewServer(NewHandler(Config{PrometheusURL: promSrv.URL}))
	t.Cleanup(api.Close)

	resp, err := http.Get(api.URL + "/api/v1/timeseries?namespace=demo&workload=web&since=10m&step=30s&window=2m")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ts TimeseriesResponse
	if err := json.NewDecoder(resp.Body).Decode(&ts); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, decode: %v", resp.StatusCode, err)
	}
	if ts.Kind != KindWorkload || ts.Name != "web" || ts.Since != "10m" || ts.Step != "30s" || ts.Window != "2m" {
		t.Errorf("answer describes %+v", ts)
	}
	if len(ts.Points) != 21 {
		t.Fatalf("%d points, want 21 (10m in 30s steps, both ends)", len(ts.Points))
	}
	first := ts.Points[0]
	if first.RPS != 0 || first.SuccessRate != nil || first.LatencyP50 != nil {
		t.Errorf("first point (no samples) = %+v, want zero traffic", first)
	}
	for i, p := range ts.Points[1:] {
		if p.Time-ts.Points[i].Time != 30 {
			t.Fatalf("points %d and %d are %ds apart, want 30", i, i+1, p.Time-ts.Points[i].Time)
		}
		if p.RPS != 4 || p.SuccessRate == nil || *p.SuccessRate != 0.75 ||
			p.LatencyP50 == nil || *p.LatencyP50 != 10 || *p.LatencyP95 != 20 || *p.LatencyP99 != 40 {
			t.Fatalf("point %d = %+v, want rps 4, success 0.75, latency 10/20/40", i+1, p)
		}
	}
	prom.mu.Lock()
	defer prom.mu.Unlock()
	if len(prom.asked) != 5 {
		t.Fatalf("asked Prometheus %d queries, want 5: %q", len(prom.asked), prom.asked)
	}
	for _, a := range prom.asked {
		if !strings.Contains(a, `workload="web"`) || !strings.Contains(a, `namespace="demo"`) ||
			!strings.Contains(a, `direction="inbound"`) || !strings.Contains(a, "[2m0s]") && !strings.Contains(a, "[2m]") {
			t.Errorf("query %q does not select web's inbound series over the 2m window", a)
		}
		if !strings.HasSuffix(a, " 30") {
			t.Errorf("query %q: step is not 30 s", a)
		}
	}
}

func TestTimeseriesBoundsItsPoints(t *testing.T) {
	api := httptest.NewServer(NewHandler(Config{PrometheusURL: "http://" + freeAddr(t)}))
	t.Cleanup(api.Close)
	for _, tt := range []struct{ query, param string }{
		{"workload=web&since=24h&step=1s", "step"},
		{"workload=web&since=1h&step=0s", "step"},
		{"workload=web&since=soon", "since"},
		{"workload=web&window=-1m", "window"},
		{"since=1h", "workload"},
		{"workload=a&service=b", "service"},
	} {
		status, msg := get(t, api.URL+"/api/v1/timeseries?"+tt.query)
		if status != http.StatusBadRequest || !strings.Contains(msg, `parameter "`+tt.param+`"`) {
			t.Errorf("%s: got %d %q, want 400 naming %q", tt.query, status, msg, tt.param)
		}
	}
}
