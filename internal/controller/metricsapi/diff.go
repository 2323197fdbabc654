package metricsapi

import (
	"cmp"
	"context"
	"math"
	"net/http"
	"regexp"
	"slices"

	"github.com/prometheus/common/model"

	"github.com/skeinmesh/skein/internal/controller/mirrordiff"
)

// MirrorExamples gives the recent mismatch examples of a route
// (mirrordiff.Store).
type MirrorExamples interface {
	Recent(route string) []mirrordiff.Example
}

// DiffResponse is the JSON of GET /api/v1/diff.
type DiffResponse struct {
	Namespace string    `json:"namespace"`
	Since     string    `json:"since"`
	Rows      []DiffRow `json:"rows"`
}

// DiffRow is one route and mirror backend: how its mirrored requests
// compared over the window (counts of mirror_total's results), and the
// route's recent mismatch examples, newest first.
type DiffRow struct {
	Route    string `json:"route"`
	Backend  string `json:"backend"`
	Match    int64  `json:"match"`
	Mismatch int64  `json:"mismatch"`
	Error    int64  `json:"error"`
	Dropped  int64  `json:"dropped"`
	Skipped  int64  `json:"skipped"`
	// MismatchRate is mismatch / (match + mismatch); null without any.
	MismatchRate *float64             `json:"mismatch_rate"`
	Examples     []mirrordiff.Example `json:"examples"`
}

// serveDiff answers for one route (route=NAME, in namespace), the routes
// of one Service (service=NAME: the mirrors of requests to it), or every
// route of the namespace.
func (s *server) serveDiff(w http.ResponseWriter, r *http.Request) {
	win, err := parseWindow(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	route, service := q.Get("route"), q.Get("service")
	for param, v := range map[string]string{"route": route, "service": service} {
		if err := checkName(param, v); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	var ms []matcher
	switch {
	case route != "" && service != "":
		s.fail(w, r, &paramError{"service", "give either route or service, not both"})
		return
	case win.namespace == "":
		s.fail(w, r, &paramError{"namespace", "required"})
		return
	case route != "":
		ms = []matcher{eq("route_name", win.namespace+"/"+route)}
	case service != "":
		ms = []matcher{eq("dst_service", service), eq("dst_namespace", win.namespace)}
	default:
		ms = []matcher{{"route_name", "=~", regexp.QuoteMeta(win.namespace) + "/.+"}}
	}
	rows, err := s.diff(r.Context(), ms, win.since)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, DiffResponse{Namespace: win.namespace, Since: win.since, Rows: rows})
}

// diff counts mirror_total's results over the window by route and
// backend:
//
//	sum by (route_name, backend, result) (increase(mirror_total{ms}[since]))
func (s *server) diff(ctx context.Context, ms []matcher, since string) ([]DiffRow, error) {
	in := instant{s: s, ts: s.now()}
	vec, err := in.vector(ctx, "sum by (route_name, backend, result) (increase("+selector("mirror_total", ms...)+"["+since+"]))")
	if err != nil {
		return nil, err
	}
	byKey := map[[2]string]*DiffRow{}
	for _, smp := range vec {
		key := [2]string{string(smp.Metric["route_name"]), string(smp.Metric["backend"])}
		row := byKey[key]
		if row == nil {
			row = &DiffRow{Route: key[0], Backend: key[1]}
			byKey[key] = row
		}
		n := int64(math.Round(float64(smp.Value)))
		switch smp.Metric[model.LabelName("result")] {
		case "match":
			row.Match += n
		case "mismatch":
			row.Mismatch += n
		case "error":
			row.Error += n
		case "dropped":
			row.Dropped += n
		case "skipped":
			row.Skipped += n
		}
	}
	rows := make([]DiffRow, 0, len(byKey))
	for _, row := range byKey {
		if compared := row.Match + row.Mismatch; compared > 0 {
			rate := float64(row.Mismatch) / float64(compared)
			row.MismatchRate = &rate
		}
		row.Examples = []mirrordiff.Example{}
		if s.examples != nil {
			for _, ex := range s.examples.Recent(row.Route) {
				if ex.Backend == row.Backend {
					row.Examples = append(row.Examples, ex)
				}
			}
		}
		rows = append(rows, *row)
	}
	slices.SortFunc(rows, func(a, b DiffRow) int {
		return cmp.Or(cmp.Compare(a.Route, b.Route), cmp.Compare(a.Backend, b.Backend))
	})
	return rows, nil
}
