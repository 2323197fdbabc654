package metricsapi

import (
	"cmp"
	"context"
	"net/http"
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

// RouteRow is one route of one authority.
type RouteRow struct {
	Route     string `json:"route"`
	Authority string `json:"authority"`
	Golden
}

func (s *server) serveRoutes(w http.ResponseWriter, r *http.Request) {
	win, err := parseWindow(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	resp := RoutesResponse{Namespace: win.namespace, Since: win.since}
	switch workload, service := q.Get("workload"), q.Get("service"); {
	case workload != "" && service != "":
		s.fail(w, r, &paramError{"service", "give either workload or service, not both"})
		return
	case workload != "":
		resp.Kind, resp.Name = KindWorkload, workload
	case service != "":
		resp.Kind, resp.Name = KindService, service
	default:
		s.fail(w, r, &paramError{"workload", "required (or service)"})
		return
	}
	if err := checkName(resp.Kind, resp.Name); err != nil {
		s.fail(w, r, err)
		return
	}
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
	var ms []matcher
	if kind == KindWorkload {
		ms = []matcher{eq("direction", "inbound"), eq("workload", name)}
		if win.namespace != "" {
			ms = append(ms, eq("namespace", win.namespace))
		}
	} else {
		ms = []matcher{eq("direction", "outbound"), eq("dst_service", name)}
		if win.namespace != "" {
			ms = append(ms, eq("dst_namespace", win.namespace))
		}
	}
	in := instant{s: s, ts: s.now()}
	groups, err := in.goldens(ctx, ms, []string{"route_name", "authority"}, win.since)
	if err != nil {
		return nil, err
	}
	rows := make([]RouteRow, 0, len(groups))
	for _, g := range groups {
		rows = append(rows, RouteRow{
			Route:     cmp.Or(string(g.labels[model.LabelName("route_name")]), DefaultRoute),
			Authority: string(g.labels["authority"]),
			Golden:    g.Golden,
		})
	}
	slices.SortFunc(rows, func(a, b RouteRow) int {
		return cmp.Or(cmp.Compare(a.Authority, b.Authority), cmp.Compare(a.Route, b.Route))
	})
	return rows, nil
}
