// Package dashboard is what `skein dashboard` runs on the user's machine:
// a loopback HTTP server that hands every request to the controller's
// metrics API, which serves the dashboard's page and everything it reads
// (internal/controller/web). In `skein up` the API is a unix socket the
// browser cannot reach; on Kubernetes it is behind a port-forward.
package dashboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// NewHandler passes GET and HEAD requests to upstream through transport
// (nil: http.DefaultTransport), streaming answers as they come (the tap
// API never ends on its own). It answers only requests addressed to the
// loopback port it serves (the Host header), so a web page elsewhere
// cannot reach the mesh's API through a name it points at 127.0.0.1, and
// refuses every other method: the dashboard only reads.
func NewHandler(upstream *url.URL, transport http.RoundTripper, port int, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := strconv.Itoa(port)
	allowed := map[string]bool{"127.0.0.1:" + p: true, "localhost:" + p: true, "[::1]:" + p: true}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(upstream)
			r.Out.Host = upstream.Host
		},
		Transport:     transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				return // the browser left (a tap page closed)
			}
			log.Warn("dashboard: the controller's API did not answer", "path", r.URL.Path, "err", err)
			http.Error(w, "the controller's API did not answer", http.StatusBadGateway)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed[r.Host] {
			http.Error(w, "this dashboard answers only at 127.0.0.1:"+p+" or localhost:"+p, http.StatusMisdirectedRequest)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard only reads", http.StatusMethodNotAllowed)
			return
		}
		proxy.ServeHTTP(w, r)
	})
}

// Listen opens the dashboard's loopback listener on port (0: a free one).
func Listen(ctx context.Context, port int) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("dashboard: listening on 127.0.0.1:%d: %w", port, err)
	}
	return ln, nil
}

// Serve serves h on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("dashboard: %w", err)
	case <-ctx.Done():
	}
	// Tap streams never end by themselves: close them rather than wait.
	shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}
