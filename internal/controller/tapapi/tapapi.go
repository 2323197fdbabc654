// Package tapapi is the controller's tap API (tap.APIPath on the metrics
// API): it resolves a tap request to the proxies of the selected
// workloads, opens each proxy's Tap.Observe over mTLS with the
// controller's own certificate (checking each proxy's identity), and
// merges their streams into one NDJSON stream of tap.Event until the
// client leaves. Bodies are asked for only from proxies whose workload or
// namespace opted in with annotations. Every session is logged with who
// asked and what.
package tapapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
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
	Log       *slog.Logger
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
	s := &server{cfg: cfg, log: cfg.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	mux.HandleFunc("GET "+tap.APIPath, s.serveTap)
}

// eventBuffer is how many events wait for a slow client; past it the
// proxies' streams back up and the proxies drop (and count) events.
const eventBuffer = 256

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
	sent, dropped := s.stream(r.Context(), w, targets, filter, req.MaxRPS, log)
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

// stream taps every target and writes their merged events to w until the
// client leaves or every proxy's stream has ended. It returns the events
// written and the drops the proxies reported.
func (s *server) stream(ctx context.Context, w http.ResponseWriter, targets []Target, filter *tappb.Filter, maxRPS int, log *slog.Logger) (sent, dropped uint64) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan tap.Event, eventBuffer)
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if t.OptInError != "" {
				s.send(ctx, events, tap.Event{Kind: tap.KindError, Time: time.Now(), Proxy: t.Name(), Error: t.OptInError})
			}
			err := s.observe(ctx, t, observeRequest(filter, maxRPS, t.Bodies), events)
			if err != nil && ctx.Err() == nil {
				log.Warn("tap of a proxy failed", "proxy", t.Name(), "addr", t.Addr.String(), "identity", t.Identity, "err", err)
				s.send(ctx, events, errorEvent(t.Name(), err))
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	// Every goroutine above ends once ctx does: this function's return
	// cancels ctx and waits for them.
	defer func() {
		cancel()
		<-done
	}()

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	write := func(e tap.Event) bool {
		if err := enc.Encode(e); err != nil {
			return false // the client left
		}
		if flusher != nil {
			flusher.Flush()
		}
		sent++
		dropped += e.Dropped
		return true
	}
	for {
		select {
		case e := <-events:
			if !write(e) {
				return sent, dropped
			}
		case <-done:
			for { // what the proxies sent before they ended
				select {
				case e := <-events:
					if !write(e) {
						return sent, dropped
					}
				default:
					return sent, dropped
				}
			}
		case <-ctx.Done():
			return sent, dropped
		}
	}
}

func (s *server) send(ctx context.Context, events chan<- tap.Event, e tap.Event) {
	select {
	case events <- e:
	case <-ctx.Done():
	}
}

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
