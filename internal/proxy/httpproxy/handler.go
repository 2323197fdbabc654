package httpproxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// Upstream decides where requests go and carries them there.
type Upstream interface {
	// RoundTrip sends one request on. It records where it went in the
	// request's RequestInfo.
	http.RoundTripper
	// DialTunnel opens a byte stream to where a CONNECT request should go.
	DialTunnel(ctx context.Context, req *http.Request) (net.Conn, error)
}

// Config is what NewHandler needs.
type Config struct {
	Direction string
	Upstream  Upstream
	Metrics   *metrics.Registry
	Log       *slog.Logger
	// TunnelIdleTimeout closes an upgraded connection or CONNECT tunnel
	// when no byte has moved either way for that long; 0 never does.
	TunnelIdleTimeout time.Duration
}

// NewHandler returns the per-request chain for one direction: metrics
// outermost, then forwarding (a reverse proxy, or a tunnel for CONNECT).
func NewHandler(cfg Config) http.Handler {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	fwd := &forwarder{upstream: cfg.Upstream, idleTimeout: cfg.TunnelIdleTimeout, log: log}
	fwd.proxy = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		Transport:      cfg.Upstream,
		ModifyResponse: fwd.upgraded,
		ErrorHandler:   errorHandler(log),
		BufferPool:     copyBuffers,
		// The default ErrorLog would print through the standard logger.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return &recorder{next: fwd, metrics: cfg.Metrics, direction: cfg.Direction}
}

// rewrite keeps the request as the client sent it: same authority, no
// X-Forwarded-* headers (the proxy is transparent). The Upstream sets the
// address it actually dials.
func rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = pr.In.Host
	pr.Out.Host = pr.In.Host
	// The server fills the incoming trailers in once the body is read; the
	// outgoing request must see that map, not a copy taken before.
	pr.Out.Trailer = pr.In.Trailer
}

// forwarder sends each request upstream; CONNECT becomes a byte tunnel.
type forwarder struct {
	proxy       *httputil.ReverseProxy
	upstream    Upstream
	idleTimeout time.Duration // of tunnels
	log         *slog.Logger
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		f.tunnel(w, r)
		return
	}
	f.proxy.ServeHTTP(w, r)
}

// ErrNoEndpoints is returned by an Upstream when a known destination has no
// endpoint to send to.
var ErrNoEndpoints = stack.ErrNoEndpoints

// ErrRefusedWithoutMTLS is returned by an Upstream that will not send a
// request because it cannot send it over mutual TLS and may not send it
// without: discovery has not said whether the destination is meshed.
var ErrRefusedWithoutMTLS = stack.ErrRefusedWithoutMTLS

// ErrorHeader carries the reason of an error the proxy itself answered, to
// those allowed to see it (see mayKnowWhy).
const ErrorHeader = "Skein-Proxy-Error"

// errorHandler answers a request that could not be forwarded. gRPC clients
// get a trailers-only UNAVAILABLE response, others 502/503/504. Why it
// failed (a dial error names addresses and ports) goes to the log always,
// and to the client only when mayKnowWhy says so.
func errorHandler(log *slog.Logger) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		status := http.StatusBadGateway
		switch {
		case errors.Is(err, ErrNoEndpoints), errors.Is(err, ErrRefusedWithoutMTLS):
			status = http.StatusServiceUnavailable
		case errors.Is(err, context.DeadlineExceeded):
			status = http.StatusGatewayTimeout
		case errors.Is(err, context.Canceled):
			// The client went away; nobody reads the answer.
			log.Debug("request cancelled", "authority", r.Host, "path", r.URL.Path)
			return
		}
		ci := ConnInfoFrom(r.Context())
		log.Info("request failed", "direction", ci.Direction, "client", ci.Client, "authority", r.Host, "path", r.URL.Path, "err", err)
		message := http.StatusText(status)
		if mayKnowWhy(ci) {
			message = err.Error()
			w.Header().Set(ErrorHeader, message)
		}
		if isGRPC(r) {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "14") // UNAVAILABLE
			w.Header().Set("Grpc-Message", message)
			w.WriteHeader(http.StatusOK)
			return
		}
		http.Error(w, http.StatusText(status), status)
	}
}

// mayKnowWhy says whether the client of a request may read why the proxy
// failed it: the local application (outbound: the workload itself) and
// meshed peers (inbound over mutual TLS) may; a client outside the mesh
// gets the bare status, since the reason names the workload's addresses,
// ports and internals.
func mayKnowWhy(ci *ConnInfo) bool {
	return ci.Direction == "outbound" || ci.ClientID != ""
}

func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return len(ct) >= len("application/grpc") && ct[:len("application/grpc")] == "application/grpc"
}

// recorder is the metrics layer: it counts every request and its response
// under the labels of where it went.
type recorder struct {
	next      http.Handler
	metrics   *metrics.Registry
	direction string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ri := &RequestInfo{}
	r = r.WithContext(WithRequestInfo(r.Context(), ri))
	sw := &statusWriter{ResponseWriter: w, start: start}
	rec.next.ServeHTTP(sw, r)
	if rec.metrics == nil {
		return
	}
	ci := ConnInfoFrom(r.Context())
	labels := metrics.HTTPLabels{
		Direction:  rec.direction,
		Authority:  authorityLabel(ri),
		TargetAddr: targetAddr(ci, ri),
		TLS:        tlsLabel(ci, ri, rec.direction),
		ClientID:   ci.ClientID,
		ServerID:   ri.ServerID,
		Dst:        metrics.DstFromEndpointLabels(ri.Endpoint.Labels),
	}
	if ri.Service != "" && labels.Dst.Service == "" {
		labels.Dst.Service = ri.Service
	}
	latency := sw.firstByte
	if latency == 0 {
		latency = time.Since(start)
	}
	rec.metrics.Request(labels).Response(sw.statusCode(ri), grpcStatus(sw.Header()), latency)
}

// authorityLabel is the destination discovery resolved the request to, in
// the form discovery matches names (lower case, no trailing dot), or
// metrics.Unknown. Never the Host / :authority as the client sent it: a
// client invents those at will, and each new value would be series the
// proxy keeps for its whole life. Inbound requests are not resolved, so
// their authority is always metrics.Unknown.
func authorityLabel(ri *RequestInfo) string {
	if ri.Service == "" {
		return metrics.Unknown
	}
	return discovery.CanonicalName(ri.Service)
}

func targetAddr(ci *ConnInfo, ri *RequestInfo) string {
	if ri.Endpoint.Addr.IsValid() {
		return ri.Endpoint.Addr.String()
	}
	if ci.Target != "" {
		return ci.Target
	}
	if ci.OrigDst.IsValid() {
		return ci.OrigDst.String()
	}
	return ""
}

func tlsLabel(ci *ConnInfo, ri *RequestInfo, direction string) string {
	if direction == "inbound" && ci.ClientID != "" {
		return "true"
	}
	if direction == "outbound" && ri.ServerID != "" {
		return "true"
	}
	return "no_identity"
}

// grpcStatus finds grpc-status in a trailers-only response's headers or in
// the trailers the reverse proxy copied into the header map.
func grpcStatus(h http.Header) string {
	if v := h.Get("Grpc-Status"); v != "" {
		return v
	}
	return h.Get(http.TrailerPrefix + "Grpc-Status")
}

// statusWriter remembers the status code and when the first byte went out.
type statusWriter struct {
	http.ResponseWriter
	start     time.Time
	status    int
	firstByte time.Duration
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 || (w.status < 200 && code >= 200) {
		w.status = code
		if w.firstByte == 0 {
			w.firstByte = time.Since(w.start)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) statusCode(ri *RequestInfo) int {
	if w.status == 0 && ri.Upgraded {
		return http.StatusSwitchingProtocols
	}
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Flush and Unwrap let http.ResponseController (used by the reverse proxy
// for flushing and upgrades) reach the real writer.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
