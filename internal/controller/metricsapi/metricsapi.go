// Package metricsapi is the controller's metrics API: golden metrics per
// workload, service and namespace (stat), who calls whom (edges), per
// route (routes) and how mirrored requests compared (diff), answered as
// JSON by querying Prometheus with PromQL over the proxies' metrics
// (docs/metrics.md). It stores nothing itself: every answer is computed
// from Prometheus at the moment of the request, plus the controller's
// inventory for what Prometheus cannot know (replica counts, meshed counts
// of idle workloads) and the mismatch examples proxies reported.
package metricsapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
)

// Config is what the metrics API needs.
type Config struct {
	// Prometheus is the API queries go to. When nil, PrometheusURL is used
	// to build one.
	Prometheus promv1.API
	// PrometheusURL is Prometheus's base URL, e.g. http://127.0.0.1:9090.
	PrometheusURL string
	// Inventory lists the workloads the controller knows, for replica and
	// meshed counts. Optional: without it those come from Prometheus alone.
	Inventory Inventory
	// MirrorExamples gives the mismatch examples proxies reported, for
	// /api/v1/diff. Optional: without it, diff shows counts only.
	MirrorExamples MirrorExamples
	// Log receives one line per failed request. Optional.
	Log *slog.Logger
	// QueryTimeout bounds each PromQL query. Default 10 s.
	QueryTimeout time.Duration
}

// DefaultQueryTimeout is Config.QueryTimeout's default.
const DefaultQueryTimeout = 10 * time.Second

// Validate reports a configuration NewHandler could not serve with, naming
// the field.
func (c Config) Validate() error {
	if c.Prometheus == nil && c.PrometheusURL == "" {
		return errors.New("metrics API: one of Prometheus and PrometheusURL must be set")
	}
	if c.Prometheus == nil {
		if _, err := api.NewClient(api.Config{Address: c.PrometheusURL}); err != nil {
			return fmt.Errorf("metrics API: PrometheusURL %q: %w", c.PrometheusURL, err)
		}
	}
	if c.QueryTimeout < 0 {
		return fmt.Errorf("metrics API: QueryTimeout %v is negative", c.QueryTimeout)
	}
	return nil
}

// server answers the API's routes.
type server struct {
	prom      promv1.API
	inventory Inventory
	log       *slog.Logger
	timeout   time.Duration
	now       func() time.Time
	examples  MirrorExamples
}

// NewHandler serves the metrics API under /api/v1/ (stat, edges, routes,
// diff, timeseries).
// Call cfg.Validate first: a configuration that does not validate gives a
// handler that answers every request with 500 and the reason.
func NewHandler(cfg Config) http.Handler {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		log.Error("metrics API not configured", "err", err)
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusInternalServerError, err.Error())
		})
	}
	prom := cfg.Prometheus
	if prom == nil {
		client, _ := api.NewClient(api.Config{Address: cfg.PrometheusURL}) // checked by Validate
		prom = promv1.NewAPI(client)
	}
	s := &server{prom: prom, inventory: cfg.Inventory, log: log, timeout: cfg.QueryTimeout, now: time.Now, examples: cfg.MirrorExamples}
	if s.timeout == 0 {
		s.timeout = DefaultQueryTimeout
	}
	if s.inventory == nil {
		s.inventory = StaticInventory(nil)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/stat", s.serveStat)
	mux.HandleFunc("GET /api/v1/edges", s.serveEdges)
	mux.HandleFunc("GET /api/v1/routes", s.serveRoutes)
	mux.HandleFunc("GET /api/v1/diff", s.serveDiff)
	mux.HandleFunc("GET /api/v1/timeseries", s.serveTimeseries)
	return mux
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg})
}

// fail answers with the status err carries (a paramError is 400, a failed
// query 503 or 500) and logs server-side failures.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var pe *paramError
	if errors.As(err, &pe) {
		writeError(w, http.StatusBadRequest, pe.Error())
		return
	}
	status := http.StatusServiceUnavailable
	var qe *queryError
	if errors.As(err, &qe) && qe.ours() {
		status = http.StatusInternalServerError
	}
	s.log.Warn("metrics API request failed", "path", r.URL.Path, "query", r.URL.RawQuery, "status", status, "err", err)
	writeError(w, status, err.Error())
}
