// Package tapapi is the controller's tap API (tap.APIPath on the metrics
// API): it resolves a tap request to the proxies of the selected
// workloads, opens each proxy's Tap.Observe over mTLS with the
// controller's own certificate (checking each proxy's identity), and
// merges their streams into one NDJSON stream of tap.Event until the
// client leaves, following proxies that join or leave the resource. Bodies are asked for only from proxies whose workload or
// namespace opted in with annotations. Every session is logged with who
// asked and what.
package tapapi

import (
	"cmp"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/tap"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

// Defaults of Config.
const (
	DefaultMaxProxies  = 100
	DefaultMaxSessions = 16
	DefaultAdminPort   = 4191
	DefaultResync      = 2 * time.Second
)

// Config is what the tap API needs.
type Config struct {
	Model Model
	// TLS gives the config to call a proxy with (the controller's client
	// certificate, the proxy's identity checked).
	TLS TLSFunc
	// MaxProxies bounds the proxies one session taps: a resource that
	// selects more is refused, naming the count (default 100).
	MaxProxies int
	// MaxSessions bounds the sessions open at once (default 16).
	MaxSessions int
	// AdminPort is the proxies' admin port, where they serve tap (default
	// 4191).
	AdminPort uint16
	// Resync is how often a session looks again for the proxies of its
	// resource, to tap those that joined and stop those that left
	// (default 2s).
	Resync time.Duration
	Log    *slog.Logger
}

type server struct {
	cfg      Config
	log      *slog.Logger
	sessions atomic.Int64
	ids      atomic.Uint64
}

// Register adds GET tap.APIPath to mux.
func Register(mux *http.ServeMux, cfg Config) {
	cfg.MaxProxies = cmp.Or(cfg.MaxProxies, DefaultMaxProxies)
	cfg.MaxSessions = cmp.Or(cfg.MaxSessions, DefaultMaxSessions)
	cfg.AdminPort = cmp.Or(cfg.AdminPort, DefaultAdminPort)
	cfg.Resync = cmp.Or(cfg.Resync, DefaultResync)
	s := &server{cfg: cfg, log: cfg.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	mux.HandleFunc("GET "+tap.APIPath, s.serveTap)
}

func (s *server) serveTap(w http.ResponseWriter, r *http.Request) {
	who := Requester(r)
	req, err := ParseRequest(r.URL.Query())
	if err != nil {
		s.log.Info("tap refused", "who", who, "query", r.URL.RawQuery, "err", err)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	targets, filter, err := s.plan(req)
	if err != nil {
		var nf *notFoundError
		status := http.StatusBadRequest
		if errors.As(err, &nf) {
			status = http.StatusNotFound
		}
		s.log.Info("tap refused", "who", who, "request", req, "err", err)
		writeError(w, status, err.Error())
		return
	}
	if n := s.sessions.Add(1); n > int64(s.cfg.MaxSessions) {
		s.sessions.Add(-1)
		s.log.Warn("tap refused: too many sessions", "who", who, "request", req, "max_sessions", s.cfg.MaxSessions)
		writeError(w, http.StatusServiceUnavailable, "too many tap sessions are open; try again later")
		return
	}
	defer s.sessions.Add(-1)

	id := s.ids.Add(1)
	start := time.Now()
	log := s.log.With("session", id)
	log.Info("tap session started", "who", who, "request", req, "proxies", len(targets), "bodies", bodiesOn(targets))
	res, _ := ParseResource(req.Resource)
	namespace := req.Namespace
	if res.Kind == KindNamespace {
		namespace = res.Name
	}
	ss := &session{server: s, filter: filter, maxRPS: req.MaxRPS, log: log,
		resolve: func() ([]Target, error) { return resolveTargets(s.cfg.Model, namespace, res, s.cfg.AdminPort) }}
	sent, dropped := ss.run(r.Context(), w, targets)
	log.Info("tap session ended", "who", who, "duration", time.Since(start).Round(time.Millisecond), "events", sent, "dropped", dropped)
}

// plan resolves the proxies to tap and the filter to send them.
func (s *server) plan(req tap.Request) ([]Target, *tappb.Filter, error) {
	res, _ := ParseResource(req.Resource) // ParseRequest checked it
	namespace := req.Namespace
	if res.Kind == KindNamespace {
		namespace = res.Name
	}
	targets, err := resolveTargets(s.cfg.Model, namespace, res, s.cfg.AdminPort)
	if err != nil {
		return nil, nil, err
	}
	if len(targets) > s.cfg.MaxProxies {
		return nil, nil, &paramError{param: tap.ParamResource, problem: "selects " + strconv.Itoa(len(targets)) +
			" proxies, more than the " + strconv.Itoa(s.cfg.MaxProxies) + " one tap may open: narrow it (a workload or pod)"}
	}
	filter := &tappb.Filter{Method: req.Method, PathPrefix: req.Path, Authority: req.Authority, Route: req.Route}
	if req.To != "" {
		to, _ := ParseResource(req.To)
		toNamespace := req.Namespace
		if to.Kind == KindNamespace {
			toNamespace = to.Name
		}
		addrs, err := peerAddresses(s.cfg.Model, toNamespace, to)
		if err != nil {
			return nil, nil, &notFoundError{"to: " + err.Error()}
		}
		if len(addrs) > maxPeerAddresses {
			return nil, nil, &paramError{param: tap.ParamTo, problem: "selects " + strconv.Itoa(len(addrs)) + " addresses, more than " + strconv.Itoa(maxPeerAddresses) + ": narrow it"}
		}
		filter.Direction = "outbound"
		filter.PeerAddresses = addrs
	}
	return targets, filter, nil
}

// maxPeerAddresses bounds the --to filter sent to every proxy.
const maxPeerAddresses = 1000

func bodiesOn(targets []Target) int {
	n := 0
	for _, t := range targets {
		if t.Bodies.BodyBytes > 0 {
			n++
		}
	}
	return n
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
