package proxy

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/detect"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/outbound"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/proxy/tap"
)

// Budgets of the whole proxied request path, allocations per request
// counted in every goroutine: a client engine, the proxy (its server
// engine, the outbound stack with real resolve, balance and connect, its
// client engine) and a server engine answering from memory. Set from what
// the path reached when written; an engine's own share is budgeted in its
// package.
const (
	pathAllocsHTTP1 = 20 // 19 reached
	pathAllocsGRPC  = 63 // 61 reached
)

func TestProxiedRequestAllocationBudget(t *testing.T) {
	for _, c := range []struct {
		name   string
		major  int
		budget float64
	}{
		{"HTTP/1.1 GET", 1, pathAllocsHTTP1},
		{"gRPC unary over HTTP/2", 2, pathAllocsGRPC},
	} {
		t.Run(c.name, func(t *testing.T) {
			send := proxiedRequest(t, c.major)
			for range 10 {
				send() // connections and series made once
			}
			allocs := testing.AllocsPerRun(500, send)
			t.Logf("%s: %v allocations per proxied request", c.name, allocs)
			if allocs > c.budget {
				t.Errorf("%s: the proxied path allocates %v times per request, over the budget of %v", c.name, allocs, c.budget)
			}
		})
	}
}

// proxiedRequest returns a function that sends one request through an
// outbound proxy on loopback to a backend, both served by the engines.
func proxiedRequest(t testing.TB, major int) func() { return proxiedRequestTapped(t, major, nil) }

// proxiedRequestTapped is proxiedRequest with the proxy's tap layer fed by
// taps; nil leaves it out.
func proxiedRequestTapped(t testing.TB, major int, taps *tap.Tap) func() {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	eng := testEngines()
	grpcHeader := stack.Header{{Name: "content-type", Value: "application/grpc"}}
	reply := []byte("\x00\x00\x00\x00\x05world")
	trailers := stack.Header{{Name: "grpc-status", Value: "0"}}
	backend := serveEngines(t, stack.HandlerFunc(func(_ context.Context, req *stack.Request) (*stack.Response, error) {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
		if req.IsGRPC() {
			return &stack.Response{Status: 200, Header: grpcHeader, Body: stack.BytesBody(reply, trailers)}, nil
		}
		return &stack.Response{Status: 204, Body: stack.NoBody}, nil
	}))
	const name = "echo.test.svc.cluster.local:8080"
	out := outbound.New(ctx, staticResolver{name: {{Addr: backend, Labels: map[string]string{"service": "echo"}}}},
		balance.DefaultOptions(), nil, quietLog())
	reg, _ := metrics.New(nil)
	proxy := serveEngines(t, outboundStack(out, stackConfig{metrics: reg, tunnelIdleTimeout: time.Hour, engines: eng, log: quietLog(), tap: taps}))
	client := eng.For(major)(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", proxy.String())
	})
	t.Cleanup(client.Close)
	hello := []byte("\x00\x00\x00\x00\x05hello")
	return func() {
		req := &stack.Request{Method: "GET", Scheme: "http", Authority: name, Path: "/", ProtoMajor: 1, Body: stack.NoBody}
		if major == 2 {
			req = &stack.Request{Method: "POST", Scheme: "http", Authority: name, Path: "/echo.Echo/Say", ProtoMajor: 2,
				Header: grpcHeader, Body: stack.BytesBody(hello, nil)}
		}
		resp, err := client.Serve(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if major == 2 && resp.Body.Trailers().Get("grpc-status") != "0" {
			t.Fatalf("status %d, trailers %v", resp.Status, resp.Body.Trailers())
		}
	}
}

// serveEngines serves h with both engines on a loopback port, each
// connection as an outbound one whose original destination is the port
// itself, and returns the port's address.
func serveEngines(t testing.TB, h stack.Handler) netip.AddrPort {
	t.Helper()
	cfg := newEngineConfig(time.Hour)
	srv := newHTTPServers(h, cfg, quietLog())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				res, rc, err := detect.Detect(c, time.Second)
				ci := &stack.ConnInfo{Direction: "outbound", OrigDst: addr}
				switch {
				case err == nil && res.Protocol == detect.HTTP2:
					srv.http2.ServeConn(rc, ci)
				case err == nil && res.Protocol == detect.HTTP1:
					srv.http1.ServeConn(rc, ci)
				default:
					c.Close()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.shutdown(ctx)
	})
	return addr
}

// BenchmarkProxiedHTTP1 is one HTTP/1.1 GET through the whole path on
// loopback (see TestProxiedRequestAllocationBudget).
func BenchmarkProxiedHTTP1(b *testing.B) { benchmarkProxied(b, 1) }

// BenchmarkProxiedGRPC is one unary gRPC call through the whole path.
func BenchmarkProxiedGRPC(b *testing.B) { benchmarkProxied(b, 2) }

func benchmarkProxied(b *testing.B, major int) {
	send := proxiedRequest(b, major)
	send()
	b.ReportAllocs()
	for b.Loop() {
		send()
	}
}
