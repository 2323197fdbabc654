package metricsapi

import (
	"cmp"
	"context"
	"net/http"
	"net/url"
	"slices"

	"github.com/prometheus/common/model"
)

// DefaultRoute names the requests no route matched (empty route_name).
const DefaultRoute = "[default]"

// RoutesResponse is the JSON of GET /api/v1/routes.
type RoutesResponse struct {
	// Kind is "workload" (what the workload served, from its inbound
	// series) or "service" (what the service's clients saw, outbound).
	Kind      string     `json:"kind"`
	Name      string     `json:"name"`
	Namespace string     `json:"namespace"`
	Since     string     `json:"since"`
	Rows      []RouteRow `json:"rows"`
}

// RouteRow is one route of one authority. Golden's success rate is the
// effective one (what the clients got, after retries).
type RouteRow struct {
	Route     string `json:"route"`
	Authority string `json:"authority"`
	Golden
	Retries
}

// Retries are a service route's retry figures, from its clients' retry
// layer; null (or 0) for a workload's routes and for routes without a
// policy.
type Retries struct {
	// ActualSuccessRate is the success rate of the first attempts, before
	// any retry, 0..1.
	ActualSuccessRate *float64 `json:"actual_success_rate"`
	// RetryRPS is retries sent per second; the other two are retryable
	// failures per second answered as is because the destination's retry
	// budget was out, or the rule's retry limit reached.
	RetryRPS                float64 `json:"retry_rps"`
	RetryBudgetExhaustedRPS float64 `json:"retry_budget_exhausted_rps"`
	RetryLimitReachedRPS    float64 `json:"retry_limit_reached_rps"`
}

func (s *server) serveRoutes(w http.ResponseWriter, r *http.Request) {
	win, err := parseWindow(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	resp := RoutesResponse{Namespace: win.namespace, Since: win.since}
	kind, name, err := subjectParam(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp.Kind, resp.Name = kind, name
	rows, err := s.routes(r.Context(), resp.Kind, resp.Name, win)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp.Rows = rows
	writeJSON(w, resp)
}

// routes groups a workload's inbound, or a service's outbound, response
// series by (route_name, authority).
func (s *server) routes(ctx context.Context, kind, name string, win window) ([]RouteRow, error) {
	ms := subjectMatchers(kind, name, win.namespace)
	in := instant{s: s, ts: s.now()}
	groups, err := in.goldens(ctx, ms, []string{"route_name", "authority"}, win.since)
	if err != nil {
		return nil, err
	}
	by := []string{"route_name", "authority"}
	retries := make(map[string]*Retries)
	if kind == KindService {
		if retries, err = in.retries(ctx, ms, by, win.since); err != nil {
			return nil, err
		}
	}
	rows := make([]RouteRow, 0, len(groups))
	for key, g := range groups {
		row := RouteRow{
			Route:     cmp.Or(string(g.labels[model.LabelName("route_name")]), DefaultRoute),
			Authority: string(g.labels["authority"]),
			Golden:    g.Golden,
		}
		if r := retries[key]; r != nil {
			row.Retries = *r
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b RouteRow) int {
		return cmp.Or(cmp.Compare(a.Authority, b.Authority), cmp.Compare(a.Route, b.Route))
	})
	return rows, nil
}

// retries computes Retries per group of labels from the series the retry
// layer keeps (labelled as response_total is, so ms selects them too):
//
//	sum by (labels) (rate(route_actual_response_total{ms,attempt="first"}[since]))
//	sum by (labels) (rate(route_actual_response_total{ms,attempt="first",classification="success"}[since]))
//	sum by (labels, result) (rate(route_retry_total{ms}[since]))
func (in instant) retries(ctx context.Context, ms []matcher, labels []string, since string) (map[string]*Retries, error) {
	out := make(map[string]*Retries)
	get := func(m model.Metric) *Retries {
		k := groupKey(m, labels)
		if out[k] == nil {
			out[k] = &Retries{}
		}
		return out[k]
	}
	first := with(ms, eq("attempt", "first"))
	total, err := in.vector(ctx, sumRate("route_actual_response_total", first, labels, since))
	if err != nil {
		return nil, err
	}
	success, err := in.vector(ctx, sumRate("route_actual_response_total", with(first, eq("classification", "success")), labels, since))
	if err != nil {
		return nil, err
	}
	succeeded := make(map[string]float64)
	for _, s := range success {
		succeeded[groupKey(s.Metric, labels)] = float64(s.Value)
	}
	for _, s := range total {
		if s.Value > 0 {
			rate := succeeded[groupKey(s.Metric, labels)] / float64(s.Value)
			get(s.Metric).ActualSuccessRate = &rate
		}
	}
	results, err := in.vector(ctx, sumRate("route_retry_total", ms, append(slices.Clone(labels), "result"), since))
	if err != nil {
		return nil, err
	}
	for _, s := range results {
		r := get(s.Metric)
		switch s.Metric["result"] {
		case "attempted":
			r.RetryRPS = float64(s.Value)
		case "budget_exhausted":
			r.RetryBudgetExhaustedRPS = float64(s.Value)
		case "limit_reached":
			r.RetryLimitReachedRPS = float64(s.Value)
		}
	}
	return out, nil
}

// subjectParam reads the one workload or service a route or time-series
// request is about: KindWorkload or KindService and its name.
func subjectParam(q url.Values) (kind, name string, err error) {
	switch workload, service := q.Get("workload"), q.Get("service"); {
	case workload != "" && service != "":
		return "", "", &paramError{"service", "give either workload or service, not both"}
	case workload != "":
		kind, name = KindWorkload, workload
	case service != "":
		kind, name = KindService, service
	default:
		return "", "", &paramError{"workload", "required (or service)"}
	}
	if err := checkName(kind, name); err != nil {
		return "", "", err
	}
	return kind, name, nil
}
