package metricsapi

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/prometheus/common/model"
)

// Kinds of stat rows.
const (
	KindWorkload  = "workload"
	KindService   = "service"
	KindNamespace = "namespace"
	KindPod       = "pod"
)

// StatResponse is the JSON of GET /api/v1/stat.
type StatResponse struct {
	Kind      string    `json:"kind"`
	Namespace string    `json:"namespace"`
	Since     string    `json:"since"`
	Rows      []StatRow `json:"rows"`
}

// StatRow is one workload, service or namespace.
type StatRow struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Workload is a pod row's workload.
	Workload string `json:"workload,omitempty"`
	// Meshed of Total instances run a proxy. For services: endpoints
	// clients reached over mTLS, of all endpoints they reached. Total 0:
	// unknown.
	Meshed int `json:"meshed"`
	Total  int `json:"total"`
	// Ready of Total instances pass their readiness probe (and so are
	// endpoints). Workloads and namespaces the controller's model knows;
	// null otherwise, and for services.
	Ready *int `json:"ready"`
	Golden
	// TCPConnections is the number of TCP connections open now.
	TCPConnections int `json:"tcp_connections"`
}

// statSpec is where one kind's numbers come from.
type statSpec struct {
	base    []matcher // the response and TCP series to read
	nsLabel string    // the label holding the row's namespace
	by      []string  // grouping labels: namespace label, then name label (if any)
}

func statSpecFor(kind, namespace string) statSpec {
	var spec statSpec
	switch kind {
	case KindWorkload:
		// What the workload served: its own proxies' inbound side.
		spec = statSpec{[]matcher{eq("direction", "inbound"), ne("workload", "")}, "namespace", []string{"namespace", "workload"}}
	case KindService:
		// What the service's clients saw: every client proxy's outbound side.
		spec = statSpec{[]matcher{eq("direction", "outbound"), ne("dst_service", "")}, "dst_namespace", []string{"dst_namespace", "dst_service"}}
	case KindNamespace:
		spec = statSpec{[]matcher{eq("direction", "inbound"), ne("namespace", "")}, "namespace", []string{"namespace"}}
	case KindPod:
		// What each replica served: the workload's grouping, one row per
		// proxy (pod label).
		spec = statSpec{[]matcher{eq("direction", "inbound"), ne("workload", ""), ne("pod", "")}, "namespace", []string{"namespace", "workload", "pod"}}
	}
	if namespace != "" {
		spec.base = with(spec.base, eq(spec.nsLabel, namespace))
	}
	return spec
}

func (s *server) serveStat(w http.ResponseWriter, r *http.Request) {
	win, err := parseWindow(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	kind := r.URL.Query().Get("kind")
	switch kind {
	case "":
		kind = KindWorkload
	case KindWorkload, KindService, KindNamespace, KindPod:
	default:
		s.fail(w, r, &paramError{"kind", fmt.Sprintf("%q is not one of workload, service, namespace, pod", kind)})
		return
	}
	rows, err := s.stat(r.Context(), kind, win)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, StatResponse{Kind: kind, Namespace: win.namespace, Since: win.since, Rows: rows})
}

// stat builds one row per group that has series or that the inventory
// knows, sorted by namespace and name.
func (s *server) stat(ctx context.Context, kind string, win window) ([]StatRow, error) {
	in := instant{s: s, ts: s.now()}
	spec := statSpecFor(kind, win.namespace)
	groups, err := in.goldens(ctx, spec.base, spec.by, win.since)
	if err != nil {
		return nil, err
	}
	rows := make(map[string]*StatRow)
	row := func(m model.Metric) *StatRow {
		key := groupKey(m, spec.by)
		if r, ok := rows[key]; ok {
			return r
		}
		r := &StatRow{Namespace: string(m[model.LabelName(spec.by[0])])}
		r.Name = string(m[model.LabelName(spec.by[len(spec.by)-1])])
		if kind == KindPod {
			r.Workload = string(m["workload"])
		}
		rows[key] = r
		return r
	}
	for _, g := range groups {
		row(g.labels).Golden = g.Golden
	}

	tcp, err := in.vector(ctx, fmt.Sprintf("sum %s (%s)", byClause(spec.by), selector("tcp_open_connections", spec.base...)))
	if err != nil {
		return nil, err
	}
	for _, sample := range tcp {
		row(sample.Metric).TCPConnections = int(sample.Value)
	}

	counts, err := s.meshedCounts(ctx, in, kind, win.namespace)
	if err != nil {
		return nil, err
	}
	for _, c := range counts {
		r := row(c.labels)
		r.Meshed, r.Total, r.Ready = c.meshed, c.total, c.ready
	}

	out := make([]StatRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b StatRow) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}
