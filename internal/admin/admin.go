// Package admin is the admin HTTP server of Skein's processes (the proxy on
// port 4191, the controller): /metrics for Prometheus, /live and /ready for
// the kubelet, /probe/tcp/PORT for the application's TCP probes the
// injector rewrote, /shutdown for a job's last container to stop its
// sidecar, and /debug/pprof for operators. It only serves what it is given; it holds
// no state of its own beyond the last readiness reason it logged.
//
// Who gets what: the port is reachable from the pod network, because the
// kubelet's probes and Prometheus's scrapes come from there. /live and
// /ready answer everyone, but only loopback clients read why the process is
// not ready (the reason can quote internal errors); others get "ready" or
// "not ready". /metrics answers everyone unless MetricsFrom narrows it.
// /probe/tcp/PORT answers everyone for the ports in ProbeTCPPorts only.
// /shutdown, /debug/pprof and every extra handler (the proxy's /identity)
// answer loopback clients only: the containers of the pod itself.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"
)

// DefaultAddr is where the admin server listens unless told otherwise.
const DefaultAddr = "0.0.0.0:4191"

// Config is what the admin server serves.
type Config struct {
	// Addr is the listen address Run uses; Serve ignores it. Default
	// DefaultAddr.
	Addr string
	// Ready reports whether the proxy is ready for traffic: nil for ready,
	// else the reason it is not (e.g. "no certificate yet"). Nil Ready means
	// always ready.
	Ready func() error
	// Shutdown is called once, on the first POST /shutdown from a loopback
	// client. It must not block for long (typically it cancels the proxy's
	// root context): the admin server itself is among what it stops.
	Shutdown func()
	// Metrics serves /metrics; nil leaves /metrics unserved (404).
	Metrics http.Handler
	// MetricsFrom, when not empty, limits /metrics to clients in these
	// networks (and loopback); others get 403. Empty: every client, as
	// Prometheus scrapes from wherever it runs.
	MetricsFrom []netip.Prefix
	// ProbeTCPPorts are the application's ports whose TCP probes the
	// injector turned into GET /probe/tcp/PORT on this server: the
	// kubelet's own TCP probe would reach the proxy through the pod's
	// inbound redirect, and the proxy accepts every connection, so it would
	// pass before the application listens. Other ports answer 404.
	ProbeTCPPorts []uint16
	// Handlers are extra routes (a http.ServeMux pattern each, e.g.
	// "/identity"), mounted beside the built-in ones and served to loopback
	// clients only. A pattern that overlaps a built-in one makes
	// http.ServeMux panic: these come from code, not from users.
	Handlers map[string]http.Handler
	// Log receives why the process is not ready, when that changes; nil
	// means slog.Default().
	Log *slog.Logger
}

// Timeouts of the admin server. WriteTimeout is generous because
// /debug/pprof/profile and /debug/pprof/trace stream for as many seconds as
// asked (30 by default) and refuse durations longer than it.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 2 * time.Minute
	idleTimeout       = time.Minute
	shutdownGrace     = 5 * time.Second
)

// Run listens on cfg.Addr and serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	addr := cfg.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("admin server: listening on %s: %w", addr, err)
	}
	return Serve(ctx, ln, cfg)
}

// Serve serves the admin endpoints on ln until ctx is done, then shuts
// down gracefully (in-flight requests get a few seconds to finish) and
// returns nil. It returns an error if serving fails before that. ln is
// closed when Serve returns.
func Serve(ctx context.Context, ln net.Listener, cfg Config) error {
	srv := &http.Server{
		Handler:           newHandler(cfg),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("admin server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if err != nil {
		// Grace period over: cut the remaining connections.
		srv.Close()
	}
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("admin server on %s: %w", ln.Addr(), serveErr)
	}
	if err != nil {
		return fmt.Errorf("admin server on %s: shutting down: %w", ln.Addr(), err)
	}
	return nil
}

// newHandler routes the admin endpoints on a mux of its own, so nothing
// registered on http.DefaultServeMux (pprof's init, for one) leaks in.
func newHandler(cfg Config) http.Handler {
	mux := http.NewServeMux()
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", fromNetworks(cfg.MetricsFrom, cfg.Metrics))
	}
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "live")
	})
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	mux.HandleFunc("GET /ready", readyHandler(cfg.Ready, log))
	mux.HandleFunc("GET /probe/tcp/{port}", tcpProbeHandler(cfg.ProbeTCPPorts))
	mux.Handle("POST /shutdown", loopbackOnly(shutdownHandler(cfg.Shutdown)))

	mux.Handle("/debug/pprof/", loopbackOnly(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", loopbackOnly(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", loopbackOnly(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", loopbackOnly(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", loopbackOnly(http.HandlerFunc(pprof.Trace)))

	for pattern, h := range cfg.Handlers {
		mux.Handle(pattern, loopbackOnly(h))
	}
	return mux
}

// readyHandler answers 200 "ready" or 503 "not ready"; loopback clients also
// read the reason, which is logged whenever it changes.
func readyHandler(ready func() error, log *slog.Logger) http.HandlerFunc {
	var mu sync.Mutex
	lastLogged := ""
	return func(w http.ResponseWriter, r *http.Request) {
		var err error
		if ready != nil {
			err = ready()
		}
		reason := ""
		if err != nil {
			reason = err.Error()
		}
		mu.Lock()
		if reason != lastLogged {
			if reason == "" {
				log.Info("ready")
			} else {
				log.Info("not ready", "reason", reason)
			}
			lastLogged = reason
		}
		mu.Unlock()
		switch {
		case err == nil:
			writeText(w, http.StatusOK, "ready")
		case isLoopback(r.RemoteAddr):
			writeText(w, http.StatusServiceUnavailable, "not ready: "+reason)
		default:
			writeText(w, http.StatusServiceUnavailable, "not ready")
		}
	}
}

// tcpProbeTimeout bounds a TCP probe's connect, under the kubelet's own
// timeout (its request's context).
const tcpProbeTimeout = 10 * time.Second

// tcpProbeHandler runs the kubelet's TCP probe of a port the application
// serves: it connects to the port on the address the probe came to (the
// pod's), as the kubelet would, but from the proxy, whose connections the
// redirect leaves alone. 200 when the connection is accepted, else 503.
func tcpProbeHandler(ports []uint16) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		port, err := strconv.ParseUint(r.PathValue("port"), 10, 16)
		if err != nil || !slices.Contains(ports, uint16(port)) {
			writeText(w, http.StatusNotFound, "not a probed port")
			return
		}
		local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		host, _, splitErr := net.SplitHostPort(fmt.Sprint(local))
		if !ok || splitErr != nil {
			writeText(w, http.StatusInternalServerError, "no local address")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), tcpProbeTimeout)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
		if err != nil {
			writeText(w, http.StatusServiceUnavailable, fmt.Sprintf("port %d does not accept connections", port))
			return
		}
		c.Close()
		writeText(w, http.StatusOK, fmt.Sprintf("port %d accepts connections", port))
	}
}

// fromNetworks refuses (403) clients outside allowed, loopback excepted;
// an empty allowed lets everyone through.
func fromNetworks(allowed []netip.Prefix, next http.Handler) http.Handler {
	if len(allowed) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		addr := ap.Addr().Unmap()
		if err == nil && (addr.IsLoopback() || slices.ContainsFunc(allowed, func(p netip.Prefix) bool { return p.Contains(addr) })) {
			next.ServeHTTP(w, r)
			return
		}
		writeText(w, http.StatusForbidden, "forbidden")
	})
}

// shutdownHandler calls shutdown on the first request and answers every
// request 202 Accepted: shutting down is under way, not finished.
func shutdownHandler(shutdown func()) http.Handler {
	var once sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if shutdown == nil {
			writeText(w, http.StatusNotImplemented, "shutdown is not enabled")
			return
		}
		once.Do(shutdown)
		writeText(w, http.StatusAccepted, "shutdown")
	})
}

// loopbackOnly refuses (403) clients that are not on a loopback address:
// the admin port is reachable from the pod network, but only containers in
// the pod itself may stop the proxy, profile it or read its identity.
func loopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLoopback(r.RemoteAddr) {
			writeText(w, http.StatusForbidden, "forbidden")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isLoopback(remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	return ap.Addr().Unmap().IsLoopback()
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, body)
}
