package metricsapi

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
)

// EdgesResponse is the JSON of GET /api/v1/edges.
type EdgesResponse struct {
	Namespace string    `json:"namespace"`
	Since     string    `json:"since"`
	Rows      []EdgeRow `json:"rows"`
}

// EdgeRow is one caller → callee pair of workloads.
type EdgeRow struct {
	SrcNamespace string `json:"src_namespace"`
	SrcWorkload  string `json:"src_workload"`
	DstNamespace string `json:"dst_namespace"`
	DstWorkload  string `json:"dst_workload"`
	// ClientID is the identity the destination's proxies verified for this
	// caller; ServerID the one the caller's proxy verified for the
	// destination. Both empty unless TLS is "true".
	ClientID string `json:"client_id"`
	ServerID string `json:"server_id"`
	// TLS is the tls label: "true" (mesh mTLS), "no_identity", "disabled".
	TLS         string   `json:"tls"`
	RPS         float64  `json:"rps"`
	SuccessRate *float64 `json:"success_rate"`
}

// edgeLabels group the callers' outbound series into edges. serviceaccount
// is the caller proxy's constant label, used to find its client identity.
var edgeLabels = []string{"namespace", "workload", "serviceaccount", "dst_namespace", "dst_workload", "server_id", "tls"}

func (s *server) serveEdges(w http.ResponseWriter, r *http.Request) {
	win, err := parseWindow(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rows, err := s.edges(r.Context(), win)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, EdgesResponse{Namespace: win.namespace, Since: win.since, Rows: rows})
}

// edges reads who calls whom from the callers' outbound series, and the
// callers' identities from the callees' inbound series (the client
// identity is what the server side verified, so it is reported by the
// server's proxies, not claimed by the client's).
func (s *server) edges(ctx context.Context, win window) ([]EdgeRow, error) {
	in := instant{s: s, ts: s.now()}
	groups, err := in.rates(ctx, []matcher{eq("direction", "outbound"), ne("dst_workload", "")}, edgeLabels, win.since)
	if err != nil {
		return nil, err
	}
	clients, err := in.clientIDs(ctx, win.since)
	if err != nil {
		return nil, err
	}
	accounts := make(map[[2]string]string)
	for _, w := range s.inventory.Workloads("") {
		accounts[[2]string{w.Namespace, w.Name}] = w.ServiceAccount
	}

	rows := make([]EdgeRow, 0, len(groups))
	for _, g := range groups {
		l := func(name string) string { return string(g.labels[model.LabelName(name)]) }
		row := EdgeRow{
			SrcNamespace: l("namespace"), SrcWorkload: l("workload"),
			DstNamespace: l("dst_namespace"), DstWorkload: l("dst_workload"),
			TLS: l("tls"), RPS: g.RPS, SuccessRate: g.SuccessRate,
		}
		if win.namespace != "" && row.SrcNamespace != win.namespace && row.DstNamespace != win.namespace {
			continue
		}
		if row.TLS == "true" {
			row.ServerID = l("server_id")
			account := cmp.Or(l("serviceaccount"), accounts[[2]string{row.SrcNamespace, row.SrcWorkload}])
			row.ClientID = matchClientID(clients[[2]string{row.DstNamespace, row.DstWorkload}], row.SrcNamespace, account)
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b EdgeRow) int {
		return cmp.Or(cmp.Compare(a.SrcNamespace, b.SrcNamespace), cmp.Compare(a.SrcWorkload, b.SrcWorkload),
			cmp.Compare(a.DstNamespace, b.DstNamespace), cmp.Compare(a.DstWorkload, b.DstWorkload),
			cmp.Compare(a.TLS, b.TLS), cmp.Compare(a.ServerID, b.ServerID))
	})
	return rows, nil
}

// clientIDs lists, per callee (namespace, workload), the client identities
// its proxies verified in the window:
//
//	sum by (namespace, workload, client_id) (rate(response_total{direction="inbound",client_id!=""}[since]))
func (in instant) clientIDs(ctx context.Context, since string) (map[[2]string][]string, error) {
	vec, err := in.vector(ctx, sumRate("response_total",
		[]matcher{eq("direction", "inbound"), ne("client_id", "")}, []string{"namespace", "workload", "client_id"}, since))
	if err != nil {
		return nil, err
	}
	out := make(map[[2]string][]string)
	for _, sample := range vec {
		key := [2]string{string(sample.Metric["namespace"]), string(sample.Metric["workload"])}
		out[key] = append(out[key], string(sample.Metric["client_id"]))
	}
	return out, nil
}

// matchClientID picks, among the identities a callee saw, the caller's:
// spiffe://TD/ns/NAMESPACE/sa/ACCOUNT. With the account unknown, a single
// identity from the caller's namespace is taken; more than one is
// ambiguous and gives "".
func matchClientID(ids []string, namespace, account string) string {
	var inNamespace []string
	for _, id := range ids {
		ns, sa, ok := spiffeNamespaceAccount(id)
		if !ok || ns != namespace {
			continue
		}
		if account != "" && sa == account {
			return id
		}
		inNamespace = append(inNamespace, id)
	}
	if account == "" && len(inNamespace) == 1 {
		return inNamespace[0]
	}
	return ""
}

// spiffeNamespaceAccount splits spiffe://TD/ns/NS/sa/SA.
func spiffeNamespaceAccount(id string) (namespace, account string, ok bool) {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return "", "", false
	}
	_, path, ok := strings.Cut(rest, "/")
	if !ok {
		return "", "", false
	}
	parts := strings.Split(path, "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return "", "", false
	}
	return parts[1], parts[3], true
}
