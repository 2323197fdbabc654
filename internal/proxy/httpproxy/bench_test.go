package httpproxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/metrics"
)

// memoryUpstream answers every request itself, without a network, so that
// the benchmarks measure the handler chain (metrics, header rewriting,
// the reverse proxy's copying) and nothing else.
type memoryUpstream struct {
	grpc bool
}

var memoryEndpoint = netip.MustParseAddrPort("10.0.0.7:8080")

func (u memoryUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if ri := RequestInfoFrom(req.Context()); ri != nil {
		ri.Endpoint.Addr = memoryEndpoint
		ri.Endpoint.Labels = map[string]string{"namespace": "bench", "service": "echo", "pod": "echo-0"}
		ri.Service = "bench/echo"
	}
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	resp := &http.Response{
		StatusCode: http.StatusOK, Proto: req.Proto, ProtoMajor: req.ProtoMajor, ProtoMinor: req.ProtoMinor,
		Header: http.Header{}, Request: req, ContentLength: -1,
	}
	if u.grpc {
		resp.Header.Set("Content-Type", "application/grpc")
		resp.Body = io.NopCloser(bytes.NewReader(grpcPingResponse))
		resp.Trailer = http.Header{"Grpc-Status": {"0"}, "Grpc-Message": {""}}
	} else {
		resp.Header.Set("Content-Type", "text/plain")
		resp.Body = io.NopCloser(bytes.NewReader(nil))
		resp.ContentLength = 0
	}
	return resp, nil
}

func (memoryUpstream) DialTunnel(context.Context, *http.Request) (net.Conn, error) {
	return nil, net.ErrClosed
}

// grpcPingResponse is a length-prefixed gRPC message of about fortio's
// ping reply's size.
var grpcPingResponse = append([]byte{0, 0, 0, 0, 24}, bytes.Repeat([]byte{'x'}, 24)...)

func benchHandler(b *testing.B, grpc bool) http.Handler {
	b.Helper()
	reg, err := metrics.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return NewHandler(Config{Direction: "outbound", Upstream: memoryUpstream{grpc: grpc}, Metrics: reg, Log: log})
}

// BenchmarkForwardHTTP1 is one HTTP/1.1 GET through the whole outbound
// chain: metrics, rewrite, reverse proxy, to an in-memory upstream.
func BenchmarkForwardHTTP1(b *testing.B) {
	h := benchHandler(b, false)
	ci := &ConnInfo{Direction: "outbound", OrigDst: netip.MustParseAddrPort("10.96.0.10:8080"),
		Client: netip.MustParseAddrPort("127.0.0.1:40000")}
	ctx := WithConnInfo(context.Background(), ci)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://echo.bench.svc.cluster.local:8080/echo", nil)
		req.Header.Set("User-Agent", "fortio.org/fortio-1.68.2")
		req.Header.Set("Accept", "*/*")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkForwardGRPC is one unary gRPC call (HTTP/2 POST with a body and
// trailers) through the whole chain.
func BenchmarkForwardGRPC(b *testing.B) {
	h := benchHandler(b, true)
	ci := &ConnInfo{Direction: "outbound", OrigDst: netip.MustParseAddrPort("10.96.0.10:8079"),
		Client: netip.MustParseAddrPort("127.0.0.1:40000")}
	ctx := WithConnInfo(context.Background(), ci)
	body := append([]byte{0, 0, 0, 0, 12}, bytes.Repeat([]byte{'p'}, 12)...)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "http://echo.bench.svc.cluster.local:8079/fgrpc.PingServer/Ping", bytes.NewReader(body))
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		req.Header.Set("User-Agent", "grpc-go/1.75.0")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkRewrite is the header rewriting alone: what the reverse proxy
// does to a request's headers before it leaves (hop-by-hop removal, the
// clone of the header map) plus Skein's rewrite.
func BenchmarkRewrite(b *testing.B) {
	in := httptest.NewRequest(http.MethodGet, "http://echo.bench.svc.cluster.local:8080/echo", nil)
	in.Header.Set("User-Agent", "fortio.org/fortio-1.68.2")
	in.Header.Set("Accept", "*/*")
	in.Header.Set("Connection", "keep-alive")
	b.ReportAllocs()
	for b.Loop() {
		out := in.Clone(in.Context())
		out.Header.Del("Connection")
		rewrite(&httputil.ProxyRequest{In: in, Out: out})
		if out.Host != in.Host {
			b.Fatal("rewrite lost the authority")
		}
	}
}
