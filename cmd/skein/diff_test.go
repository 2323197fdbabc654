package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/controller/metricsapi"
	"github.com/skeinmesh/skein/internal/controller/mirrordiff"
)

// fakePrometheus answers every instant query with mirror_total's
// increase over the window for one route, and records the query.
func fakePrometheus(t *testing.T, query *string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		r.ParseForm()
		*query = r.Form.Get("query")
		sample := func(result, value string) string {
			return `{"metric":{"route_name":"demo/web-mirror","backend":"web-v2.demo.svc.cluster.local:8080","result":"` +
				result + `"},"value":[1700000000,"` + value + `"]}`
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[` +
			sample("match", "90.00001") + "," + sample("mismatch", "9.99999") + "," + sample("dropped", "3") + `]}}`))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestDiffShowsCountsAndRecentExamples(t *testing.T) {
	var query string
	store := mirrordiff.NewStore()
	when := time.Date(2026, 11, 29, 22, 0, 0, 0, time.UTC)
	store.Add(mirrordiff.Example{Time: when, Route: "demo/web-mirror", Backend: "web-v2.demo.svc.cluster.local:8080",
		Proxy: "spiffe://cluster.local/ns/demo/sa/client", Method: "GET", Path: "/api/items", PrimaryStatus: 200, MirrorStatus: 200,
		Headers:     []mirrordiff.HeaderDiff{{Name: "authorization", Primary: "[REDACTED]", Mirror: "[REDACTED]"}},
		BodyDiffers: true, PrimaryBody: `{"price": 10}`, MirrorBody: `{"price": 12}`})
	store.Add(mirrordiff.Example{Time: when, Route: "demo/other", Backend: "x.demo.svc.cluster.local:80"})
	controller := httptest.NewServer(metricsapi.NewHandler(metricsapi.Config{
		PrometheusURL: fakePrometheus(t, &query), MirrorExamples: store,
	}))
	t.Cleanup(controller.Close)

	out, err := run(t, "diff", "route", "web-mirror", "-n", "demo", "-o", "json", "--api", controller.URL)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if want := `sum by (route_name, backend, result) (increase(mirror_total{route_name="demo/web-mirror"}[1m]))`; query != want {
		t.Errorf("PromQL %s, want %s", query, want)
	}
	var got metricsapi.DiffResponse
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("-o json is not a DiffResponse: %v\n%s", err, out)
	}
	if len(got.Rows) != 1 {
		t.Fatalf("rows %+v, want one", got.Rows)
	}
	row := got.Rows[0]
	if row.Route != "demo/web-mirror" || row.Match != 90 || row.Mismatch != 10 || row.Dropped != 3 ||
		row.MismatchRate == nil || *row.MismatchRate != 0.1 || len(row.Examples) != 1 {
		t.Errorf("row %+v, want 90 matches, 10 mismatches (10%%), 3 dropped and one example", row)
	}
	if ex := row.Examples[0]; ex.Headers[0].Primary != "[REDACTED]" || ex.MirrorBody != `{"price": 12}` || !ex.Time.Equal(when) {
		t.Errorf("example %+v", ex)
	}
	for _, field := range []string{`"route"`, `"backend"`, `"match"`, `"mismatch"`, `"mismatch_rate"`, `"error"`, `"dropped"`,
		`"skipped"`, `"examples"`, `"primary_status"`, `"mirror_status"`, `"headers"`, `"body_differs"`, `"primary_body"`,
		`"mirror_body"`, `"proxy"`, `"method"`, `"path"`, `"time"`} {
		if !strings.Contains(out, field) {
			t.Errorf("-o json lacks documented field %s", field)
		}
	}

	out, err = run(t, "diff", "service/web", "-n", "demo", "--api", controller.URL)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if want := `sum by (route_name, backend, result) (increase(mirror_total{dst_service="web",dst_namespace="demo"}[1m]))`; query != want {
		t.Errorf("PromQL %s, want %s", query, want)
	}
	want := `
ROUTE            BACKEND                             MATCH  MISMATCH  MISMATCH_RATE  ERROR  DROPPED  SKIPPED
demo/web-mirror  web-v2.demo.svc.cluster.local:8080  90     10        10.0%          0      3        0

recent mismatches of demo/web-mirror -> web-v2.demo.svc.cluster.local:8080 (newest first):
  2026-11-29T22:00:00Z  GET "/api/items"  status 200 vs 200  body differs
    authorization: "[REDACTED]" vs "[REDACTED]"
    primary body: "{\"price\": 10}"
    mirror body:  "{\"price\": 12}"
`
	if out != strings.TrimPrefix(want, "\n") {
		t.Errorf("output:\n%s\nwant:\n%s", out, strings.TrimPrefix(want, "\n"))
	}
}

func TestDiffRefusesOtherTargets(t *testing.T) {
	for _, args := range [][]string{{"deploy/web"}, {"route"}, {"service", "web"}, {"route/a", "b"}} {
		if _, err := run(t, append([]string{"diff", "--api", "http://127.0.0.1:1"}, args...)...); err == nil ||
			!strings.Contains(err.Error(), "want service/NAME, route/NAME or route NAME") {
			t.Errorf("diff %v: %v, want the accepted forms named", args, err)
		}
	}
}
