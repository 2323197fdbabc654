package authzapi

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	prommodel "github.com/prometheus/common/model"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/controller/inbound"
	"github.com/skeinmesh/skein/internal/source/files"
)

// maxProposal bounds the proposed policy a simulate request may carry.
const maxProposal = 1 << 20

// DefaultSimulateSince is the traffic window simulate replays.
const DefaultSimulateSince = "10m"

// SimulateResponse is the JSON of POST /api/v1/authz/simulate.
type SimulateResponse struct {
	Since string `json:"since"`
	// Edges are the inbound edges of the window that the proposed policy
	// would deny (or, in audit, only log); Replayed counts every edge.
	Edges    []Edge `json:"edges"`
	Replayed int    `json:"replayed"`
}

// Edge is one client of one workload port over the window.
type Edge struct {
	Namespace string `json:"namespace"`
	Workload  string `json:"workload"`
	Port      uint16 `json:"port"`
	// ClientID is the meshed client's identity; empty for unmeshed
	// clients, whose source address the proxies' counters do not keep (so
	// rules on networks cannot be replayed for them: see Note).
	ClientID string   `json:"client_id"`
	Kind     string   `json:"kind"` // "http" or "tcp"
	Count    float64  `json:"count"`
	Live     Decision `json:"live"`
	Proposed Decision `json:"proposed"`
	Note     string   `json:"note,omitempty"`
}

// edgeKey groups samples by workload, port, client and kind.
type edgeKey struct {
	namespace, workload string
	port                uint16
	client, kind        string
}

func (s *server) serveSimulate(w http.ResponseWriter, r *http.Request) {
	live := s.compiled(w)
	if live == nil {
		return
	}
	if s.cfg.Prometheus == nil {
		writeError(w, http.StatusServiceUnavailable, "simulate needs Prometheus (the controller's -prometheus-url)")
		return
	}
	since := cmp.Or(r.URL.Query().Get("since"), DefaultSimulateSince)
	if _, err := prommodel.ParseDuration(since); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("since: %q is not a duration (30s, 10m, 1h)", since))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxProposal+1))
	if err != nil || len(body) > maxProposal {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("the proposed policy must be at most %d bytes", maxProposal))
		return
	}
	extra, err := files.DecodeProposed(cmp.Or(r.URL.Query().Get("file"), "proposed policy"), body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	proposed := live.Recompile(extra)
	if errs := proposedErrors(live, proposed); len(errs) > 0 {
		writeError(w, http.StatusBadRequest, "the proposed policy is invalid: "+strings.Join(errs, "; "))
		return
	}
	edges, err := s.edges(r.Context(), since)
	if err != nil {
		s.log.Warn("authz simulate: querying Prometheus failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "querying Prometheus: "+err.Error())
		return
	}
	resp := SimulateResponse{Since: since, Edges: []Edge{}, Replayed: len(edges)}
	for _, e := range edges {
		inst, ok := live.InstanceOf(e.Namespace, e.Workload)
		if !ok {
			continue // gone since
		}
		client := authz.Client{Identity: e.ClientID}
		var req *authz.Request // per-route rules cannot be replayed: the counters keep no path
		liveIn, _ := live.Inbound(inst.Namespace, inst.Name, e.Port)
		propIn, _ := proposed.Inbound(inst.Namespace, inst.Name, e.Port)
		// The one evaluation the proxies run (internal/authz/decide.go); a
		// nil policy decides as deny.
		ld, pd := liveIn.Decide(client, req), propIn.Decide(client, req)
		if pd.Allowed && !pd.Audit {
			continue
		}
		e.Live, e.Proposed = decisionOf(ld), decisionOf(pd)
		if e.ClientID == "" {
			e.Note = "unmeshed client: its address is not counted, so it was replayed without one"
		}
		resp.Edges = append(resp.Edges, e)
	}
	writeJSON(w, resp)
}

// proposedErrors are the errors of the proposed compilation that the live
// one does not have: the proposal's own.
func proposedErrors(live, proposed *inbound.Compiled) []string {
	had := map[string]bool{}
	for _, e := range live.Errors {
		had[e.Error()] = true
	}
	var out []string
	for _, e := range proposed.Errors {
		if !had[e.Error()] {
			out = append(out, e.Error())
		}
	}
	return out
}

// edgeQueries are the proxies' authorization decisions an edge is made
// of: every HTTP request and opaque connection the inbound policy decided,
// allowed or denied. Not request_total and tcp_open_total: those count
// the kubelet's probes (allowed as probes, whatever the policy; replayed
// without their path they would show as denied edges) and count every
// HTTP connection again as a TCP one, which the policy never decides as
// opaque.
var edgeQueries = []struct{ kind, series string }{
	{"http", `inbound_http_authz_allow_total{authz_name!="probe"}`},
	{"http", `inbound_http_authz_deny_total`},
	{"tcp", `inbound_tcp_authz_allow_total`},
	{"tcp", `inbound_tcp_authz_deny_total`},
}

// edges reads the inbound edges of the window: HTTP requests and opaque
// connections by workload, port and client identity.
func (s *server) edges(ctx context.Context, since string) ([]Edge, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	byKey := map[edgeKey]*Edge{}
	for _, q := range edgeQueries {
		query := fmt.Sprintf(`sum by (namespace, workload, target_addr, client_id) (increase(%s[%s])) > 0`, q.series, since)
		v, _, _, err := s.cfg.Prometheus.Query(ctx, query, timeNow())
		if err != nil {
			return nil, err
		}
		vec, ok := v.(prommodel.Vector)
		if !ok {
			return nil, fmt.Errorf("query %s: a %s, not a vector", query, v.Type())
		}
		for _, sample := range vec {
			port := targetPort(string(sample.Metric["target_addr"]))
			if port == 0 {
				continue // nothing listened on the port
			}
			key := edgeKey{string(sample.Metric["namespace"]), string(sample.Metric["workload"]), port, string(sample.Metric["client_id"]), q.kind}
			e := byKey[key]
			if e == nil {
				e = &Edge{Namespace: key.namespace, Workload: key.workload, Port: port, ClientID: key.client, Kind: q.kind}
				byKey[key] = e
			}
			e.Count += float64(sample.Value)
		}
	}
	out := make([]Edge, 0, len(byKey))
	for _, e := range byKey {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b Edge) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Workload, b.Workload),
			cmp.Compare(a.Port, b.Port), strings.Compare(a.Kind, b.Kind), strings.Compare(a.ClientID, b.ClientID))
	})
	return out, nil
}

func targetPort(addr string) uint16 {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return 0
	}
	return uint16(n)
}
