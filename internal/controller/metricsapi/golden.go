package metricsapi

import (
	"context"
	"math"

	"github.com/prometheus/common/model"
)

// Golden are the golden metrics of one row: request rate, success rate and
// latency percentiles. Pointers are null in JSON when there is no data
// (no requests in the window).
type Golden struct {
	// RPS is responses per second over the window.
	RPS float64 `json:"rps"`
	// SuccessRate is the share of responses classified "success", 0..1.
	SuccessRate *float64 `json:"success_rate"`
	// Latencies in milliseconds, from the response_latency_ms histogram.
	LatencyP50 *float64 `json:"latency_ms_p50"`
	LatencyP95 *float64 `json:"latency_ms_p95"`
	LatencyP99 *float64 `json:"latency_ms_p99"`
}

// goldenGroup is one group of a goldens answer: its labels and numbers.
type goldenGroup struct {
	labels model.Metric
	Golden
}

// goldens computes Golden for every group of labels over the response
// series that ms selects:
//
//	sum by (labels) (rate(response_total{ms}[since]))
//	sum by (labels) (rate(response_total{ms,classification="success"}[since]))
//	histogram_quantile(Q, sum by (le, labels) (rate(response_latency_ms_bucket{ms}[since])))
//
// The success rate is divided here, so a group with no traffic gets null
// rather than NaN.
func (in instant) goldens(ctx context.Context, ms []matcher, labels []string, since string) (map[string]*goldenGroup, error) {
	groups, err := in.rates(ctx, ms, labels, since)
	if err != nil {
		return nil, err
	}
	for _, p := range []struct {
		q   float64
		dst func(*Golden) **float64
	}{
		{0.5, func(g *Golden) **float64 { return &g.LatencyP50 }},
		{0.95, func(g *Golden) **float64 { return &g.LatencyP95 }},
		{0.99, func(g *Golden) **float64 { return &g.LatencyP99 }},
	} {
		vec, err := in.vector(ctx, latencyQuantile(p.q, ms, labels, since))
		if err != nil {
			return nil, err
		}
		for _, s := range vec {
			if g, ok := groups[groupKey(s.Metric, labels)]; ok {
				*p.dst(&g.Golden) = finite(float64(s.Value))
			}
		}
	}
	return groups, nil
}

// rates computes RPS and SuccessRate (the first two queries of goldens)
// for every group of labels.
func (in instant) rates(ctx context.Context, ms []matcher, labels []string, since string) (map[string]*goldenGroup, error) {
	groups := make(map[string]*goldenGroup)
	total, err := in.vector(ctx, sumRate("response_total", ms, labels, since))
	if err != nil {
		return nil, err
	}
	for _, s := range total {
		groups[groupKey(s.Metric, labels)] = &goldenGroup{labels: s.Metric, Golden: Golden{RPS: float64(s.Value)}}
	}
	success, err := in.vector(ctx, sumRate("response_total", with(ms, eq("classification", "success")), labels, since))
	if err != nil {
		return nil, err
	}
	succeeded := make(map[string]float64)
	for _, s := range success {
		succeeded[groupKey(s.Metric, labels)] = float64(s.Value)
	}
	for key, g := range groups {
		if g.RPS > 0 {
			rate := succeeded[key] / g.RPS
			g.SuccessRate = &rate
		}
	}
	return groups, nil
}

// finite is &v, or nil for NaN and infinities (histogram_quantile's "no
// data").
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}
