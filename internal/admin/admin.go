// Package admin is the admin HTTP server of Skein's processes (the proxy on
// port 4191, the controller): /metrics for Prometheus, /live and /ready for
// the kubelet, /shutdown for a job's last container to stop its sidecar,
// and /debug/pprof for operators. It only serves what it is given; it holds
// no state of its own.
package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
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
	// Handlers are extra routes (a http.ServeMux pattern each, e.g.
	// "/tap"), mounted beside the built-in ones. A pattern that overlaps a
	// built-in one makes http.ServeMux panic: these come from code, not
	// from users.
	Handlers map[string]http.Handler
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
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "live")
	})
	mux.HandleFunc("GET /ready", readyHandler(cfg.Ready))
	mux.Handle("POST /shutdown", loopbackOnly(shutdownHandler(cfg.Shutdown)))

	mux.Handle("/debug/pprof/", loopbackOnly(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", loopbackOnly(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", loopbackOnly(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", loopbackOnly(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", loopbackOnly(http.HandlerFunc(pprof.Trace)))

	for pattern, h := range cfg.Handlers {
		mux.Handle(pattern, h)
	}
	return mux
}

func readyHandler(ready func() error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
				return
			}
		}
		writeText(w, http.StatusOK, "ready")
	}
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
// the pod itself may stop the proxy or profile it.
func loopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLoopback(r.RemoteAddr) {
			writeText(w, http.StatusForbidden, "forbidden: only loopback clients may use "+r.URL.Path)
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
