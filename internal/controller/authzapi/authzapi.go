// Package authzapi is the controller's authorization API for `skein authz`:
// the Servers of a namespace with their policies and who may call them,
// `explain` (how the live policy decides one request, with the same
// (*authz.Inbound).Decide the proxies run) and `simulate` (the inbound
// edges of the last minutes, from Prometheus, replayed through proposed
// policy merged with the live one). It serves JSON beside the metrics API
// and changes nothing.
package authzapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/controller/inbound"
)

// Policy is where the live compiled policy comes from (inbound.Server).
type Policy interface {
	Compiled() *inbound.Compiled
}

// Config is what the API needs.
type Config struct {
	Policy Policy
	// Prometheus answers simulate's query; without it simulate answers 503.
	Prometheus promv1.API
	Log        *slog.Logger
}

type server struct {
	cfg Config
	log *slog.Logger
}

// Register adds the API's routes to mux: GET /api/v1/authz, GET
// /api/v1/authz/explain and POST /api/v1/authz/simulate.
func Register(mux *http.ServeMux, cfg Config) {
	s := &server{cfg: cfg, log: cfg.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	mux.HandleFunc("GET /api/v1/authz", s.serveList)
	mux.HandleFunc("GET /api/v1/authz/explain", s.serveExplain)
	mux.HandleFunc("POST /api/v1/authz/simulate", s.serveSimulate)
}

// ListResponse is the JSON of GET /api/v1/authz.
type ListResponse struct {
	Namespace string                    `json:"namespace"`
	Workload  string                    `json:"workload,omitempty"`
	Servers   []inbound.ServerView      `json:"servers"`
	Defaults  []inbound.WorkloadDefault `json:"defaults"`
	Invalid   []string                  `json:"invalid,omitempty"`
}

func (s *server) compiled(w http.ResponseWriter) *inbound.Compiled {
	c := s.cfg.Policy.Compiled()
	if c == nil {
		writeError(w, http.StatusServiceUnavailable, "the controller has not compiled its policy yet")
	}
	return c
}

func (s *server) serveList(w http.ResponseWriter, r *http.Request) {
	c := s.compiled(w)
	if c == nil {
		return
	}
	q := r.URL.Query()
	resp := ListResponse{Namespace: q.Get("namespace"), Workload: q.Get("workload")}
	resp.Servers = c.Servers(resp.Namespace, resp.Workload)
	resp.Defaults = c.Defaults(resp.Namespace, resp.Workload)
	if resp.Servers == nil {
		resp.Servers = []inbound.ServerView{}
	}
	if resp.Defaults == nil {
		resp.Defaults = []inbound.WorkloadDefault{}
	}
	for _, e := range c.Errors {
		if resp.Namespace == "" || e.Namespace == resp.Namespace {
			resp.Invalid = append(resp.Invalid, e.Error())
		}
	}
	writeJSON(w, resp)
}

// ExplainResponse is the JSON of GET /api/v1/authz/explain.
type ExplainResponse struct {
	From      string `json:"from"`
	Namespace string `json:"namespace"`
	Workload  string `json:"workload"`
	Pod       string `json:"pod"`
	Port      uint16 `json:"port"`
	Path      string `json:"path,omitempty"`
	Method    string `json:"method,omitempty"`
	Decision
}

// Decision is authz.Decision with JSON names.
type Decision struct {
	Allowed       bool   `json:"allowed"`
	Audit         bool   `json:"audit"`
	Server        string `json:"server"`
	Route         string `json:"route"`
	Authorization string `json:"authorization"`
	Default       string `json:"default_policy"`
	Reason        string `json:"reason"`
}

func decisionOf(d authz.Decision) Decision {
	return Decision{Allowed: d.Allowed, Audit: d.Audit, Server: d.Server, Route: d.Route, Authorization: d.Authorization, Default: string(d.Default), Reason: d.Reason()}
}

func (s *server) serveExplain(w http.ResponseWriter, r *http.Request) {
	c := s.compiled(w)
	if c == nil {
		return
	}
	q := r.URL.Query()
	resp := ExplainResponse{From: q.Get("from"), Namespace: q.Get("namespace"), Path: q.Get("path"), Method: q.Get("method")}
	client, err := ParseClient(resp.From)
	if err != nil {
		writeError(w, http.StatusBadRequest, "from: "+err.Error())
		return
	}
	workload, portText, ok := strings.Cut(q.Get("to"), ":")
	port, perr := strconv.ParseUint(portText, 10, 16)
	if !ok || workload == "" || perr != nil || port == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("to: %q is not WORKLOAD:PORT", q.Get("to")))
		return
	}
	if resp.Namespace == "" {
		writeError(w, http.StatusBadRequest, "namespace: required")
		return
	}
	resp.Workload, resp.Port = workload, uint16(port)
	inst, ok := c.InstanceOf(resp.Namespace, workload)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no workload %s/%s has instances the controller knows", resp.Namespace, workload))
		return
	}
	resp.Pod = inst.Name
	policy, _ := c.Inbound(inst.Namespace, inst.Name, resp.Port)
	var req *authz.Request
	if resp.Path != "" || resp.Method != "" {
		req = &authz.Request{Method: strings.ToUpper(resp.Method), Path: resp.Path, Header: func(string) (string, bool) { return "", false }}
		if req.Method == "" {
			req.Method = http.MethodGet
		}
		if req.Path == "" {
			req.Path = "/"
		}
	}
	resp.Decision = decisionOf(policy.Decide(client, req))
	writeJSON(w, resp)
}

// ParseClient reads --from: a SPIFFE ID (a meshed client), or an IP
// address or CIDR (an unmeshed client at that address; a CIDR stands for
// its first address).
func ParseClient(from string) (authz.Client, error) {
	switch {
	case strings.HasPrefix(from, "spiffe://"):
		return authz.Client{Identity: from}, nil
	case from == "":
		return authz.Client{}, fmt.Errorf("required: a SPIFFE ID, an IP address or a CIDR")
	}
	if a, err := netip.ParseAddr(from); err == nil {
		return authz.Client{Addr: a.Unmap()}, nil
	}
	if p, err := netip.ParsePrefix(from); err == nil {
		return authz.Client{Addr: p.Masked().Addr()}, nil
	}
	return authz.Client{}, fmt.Errorf("%q is not a SPIFFE ID (spiffe://...), an IP address or a CIDR", from)
}

// errorBody is the JSON of every error answer, as the metrics API's.
type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg})
}

// queryTimeout bounds simulate's PromQL query.
const queryTimeout = 10 * time.Second

// timeNow is time.Now, for the query's evaluation time.
var timeNow = time.Now
