package metricsapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Bounds of GET /api/v1/timeseries.
const (
	// DefaultTimeseriesSince is how far back a series goes by default.
	DefaultTimeseriesSince = "15m"
	// DefaultTimeseriesPoints is how many points a series has when the
	// request gives no step.
	DefaultTimeseriesPoints = 90
	// MaxTimeseriesPoints is the most points a series may have: a request
	// whose since/step asks for more is refused.
	MaxTimeseriesPoints = 500
	// MinTimeseriesStep is the finest step.
	MinTimeseriesStep = time.Second
)

// TimeseriesResponse is the JSON of GET /api/v1/timeseries: one workload's
// (inbound) or service's (its clients' outbound) golden metrics over time.
type TimeseriesResponse struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Since is how far back the series go; Step the time between points;
	// Window the range each point's rate and percentiles are computed over.
	Since  string  `json:"since"`
	Step   string  `json:"step"`
	Window string  `json:"window"`
	Points []Point `json:"points"`
}

// Point is the golden metrics at one time (Unix seconds). RPS is 0 and the
// rest null where there was no traffic.
type Point struct {
	Time int64 `json:"t"`
	Golden
}

func (s *server) serveTimeseries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := checkName("namespace", q.Get("namespace")); err != nil {
		s.fail(w, r, err)
		return
	}
	resp := TimeseriesResponse{Namespace: q.Get("namespace")}
	kind, name, err := subjectParam(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp.Kind, resp.Name = kind, name
	since, err := durationParam(q.Get("since"), "since", DefaultTimeseriesSince)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	step := since / DefaultTimeseriesPoints
	if q.Get("step") != "" {
		if step, err = durationParam(q.Get("step"), "step", ""); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	step = max(step.Truncate(time.Second), MinTimeseriesStep)
	if since/step > MaxTimeseriesPoints {
		s.fail(w, r, &paramError{"step", fmt.Sprintf("%s over %s is more than %d points", step, since, MaxTimeseriesPoints)})
		return
	}
	window := DefaultSince
	if q.Get("window") != "" {
		d, err := durationParam(q.Get("window"), "window", "")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		window = model.Duration(d).String()
	}
	resp.Since, resp.Step, resp.Window = model.Duration(since).String(), model.Duration(step).String(), window

	// Align the range to the step, so the points of successive requests
	// fall at the same times and a chart does not shift as it refreshes.
	end := s.now().Truncate(step)
	rng := promv1.Range{Start: end.Add(-since), End: end, Step: step}
	points, err := s.timeseries(r.Context(), subjectMatchers(resp.Kind, resp.Name, resp.Namespace), window, rng)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp.Points = points
	writeJSON(w, resp)
}

// durationParam parses a positive PromQL duration, or def when v is empty.
func durationParam(v, param, def string) (time.Duration, error) {
	if v == "" {
		v = def
	}
	d, err := model.ParseDuration(v)
	if err != nil {
		return 0, &paramError{param, fmt.Sprintf("%q is not a duration like 30s, 1m or 1h", v)}
	}
	if d <= 0 {
		return 0, &paramError{param, "must be positive"}
	}
	return time.Duration(d), nil
}

// subjectMatchers selects a workload's inbound response series, or a
// service's clients' outbound ones (what stat and routes read for them).
func subjectMatchers(kind, name, namespace string) []matcher {
	if kind == KindWorkload {
		ms := []matcher{eq("direction", "inbound"), eq("workload", name)}
		if namespace != "" {
			ms = append(ms, eq("namespace", namespace))
		}
		return ms
	}
	ms := []matcher{eq("direction", "outbound"), eq("dst_service", name)}
	if namespace != "" {
		ms = append(ms, eq("dst_namespace", namespace))
	}
	return ms
}

// timeseries runs the queries of goldens as range queries over rng, with
// no grouping, and joins them by time:
//
//	sum (rate(response_total{ms}[window]))
//	sum (rate(response_total{ms,classification="success"}[window]))
//	histogram_quantile(Q, sum by (le) (rate(response_latency_ms_bucket{ms}[window])))
func (s *server) timeseries(ctx context.Context, ms []matcher, window string, rng promv1.Range) ([]Point, error) {
	total, err := s.series(ctx, sumRate("response_total", ms, nil, window), rng)
	if err != nil {
		return nil, err
	}
	success, err := s.series(ctx, sumRate("response_total", with(ms, eq("classification", "success")), nil, window), rng)
	if err != nil {
		return nil, err
	}
	byTime := make(map[int64]*Point)
	for t, v := range total {
		p := &Point{Time: t, Golden: Golden{RPS: v}}
		if v > 0 {
			rate := success[t] / v
			p.SuccessRate = &rate
		}
		byTime[t] = p
	}
	for _, pq := range []struct {
		q   float64
		dst func(*Golden) **float64
	}{
		{0.5, func(g *Golden) **float64 { return &g.LatencyP50 }},
		{0.95, func(g *Golden) **float64 { return &g.LatencyP95 }},
		{0.99, func(g *Golden) **float64 { return &g.LatencyP99 }},
	} {
		vals, err := s.series(ctx, latencyQuantile(pq.q, ms, nil, window), rng)
		if err != nil {
			return nil, err
		}
		for t, v := range vals {
			if p, ok := byTime[t]; ok {
				*pq.dst(&p.Golden) = finite(v)
			}
		}
	}
	// Every step gets a point, so a chart shows gaps as zero traffic
	// rather than joining the points either side.
	var points []Point
	for at := rng.Start; !at.After(rng.End); at = at.Add(rng.Step) {
		p, ok := byTime[at.Unix()]
		if !ok {
			p = &Point{Time: at.Unix()}
		}
		points = append(points, *p)
	}
	return points, nil
}

// series runs q over rng and returns its one series as value by Unix
// second (empty when the query has no result).
func (s *server) series(ctx context.Context, q string, rng promv1.Range) (map[int64]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	v, warnings, _, err := s.prom.QueryRange(ctx, q, rng)
	if err != nil {
		return nil, &queryError{query: q, err: err}
	}
	if len(warnings) > 0 {
		s.log.Debug("Prometheus warnings", "query", q, "warnings", warnings)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, &queryError{query: q, err: fmt.Errorf("got a %s, want a matrix", v.Type())}
	}
	out := make(map[int64]float64)
	for _, stream := range m {
		for _, sample := range stream.Values {
			out[sample.Timestamp.Unix()] += float64(sample.Value)
		}
	}
	return out, nil
}
