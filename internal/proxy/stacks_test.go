package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/proxy/authorize"
	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/outbound"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/proxy/tap"
)

// staticResolver answers from a fixed map; unknown keys do not exist.
type staticResolver map[string][]discovery.Endpoint

func (r staticResolver) Watch(_ context.Context, dst string, update func(discovery.EndpointSet)) error {
	eps, ok := r[dst]
	update(discovery.EndpointSet{Exists: ok, Endpoints: eps})
	return nil
}

// Budgets of what the outbound layers (metrics, errors, resolve, balance,
// tunnel watch) allocate per request, over a terminal that allocates
// nothing: what they reached when written (see the test). The engines'
// own costs are budgeted in their packages.
const (
	// the balancer's Handle, its GotConn hook, the response body wrapper
	// that ends the handle, and the target_addr label's string.
	layerAllocsHTTP = 4
	// the same, plus the request body's resend guard and the metrics
	// layer's wrapper that reads grpc-status from the trailers.
	layerAllocsGRPC = 6
)

// Budgets of what the inbound layers (metrics, errors, authorize, rate
// limit, tunnel watch) allocate per request a meshed client may make, over
// a terminal that allocates nothing: what they reached when written.
const (
	// the request authorize hands authz.Decide and its header lookup.
	inboundAllocsHTTP = 2
	// the same, plus the metrics layer's wrapper that reads grpc-status
	// from the trailers.
	inboundAllocsGRPC = 3
)

// TestLayersAllocationBudget holds the outbound and the inbound layers to
// their budgets above.
func TestLayersAllocationBudget(t *testing.T) {
	idleTap := func() *tap.Tap { return tap.New(tap.Config{}) }
	for _, c := range []struct {
		name   string
		send   func(t testing.TB, grpc bool, taps *tap.Tap) func()
		grpc   bool
		budget float64
		taps   *tap.Tap
	}{
		{"outbound HTTP GET", layeredRequestTapped, false, layerAllocsHTTP, nil},
		{"outbound gRPC unary", layeredRequestTapped, true, layerAllocsGRPC, nil},
		// With no tap session open the tap layer allocates nothing.
		{"outbound HTTP GET, tap idle", layeredRequestTapped, false, layerAllocsHTTP, idleTap()},
		{"outbound gRPC unary, tap idle", layeredRequestTapped, true, layerAllocsGRPC, idleTap()},
		{"inbound HTTP GET", inboundLayeredRequest, false, inboundAllocsHTTP, nil},
		{"inbound gRPC unary", inboundLayeredRequest, true, inboundAllocsGRPC, nil},
		{"inbound gRPC unary, tap idle", inboundLayeredRequest, true, inboundAllocsGRPC, idleTap()},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkAllocBudget(t, c.name, c.send(t, c.grpc, c.taps), c.budget)
		})
	}
}

// BenchmarkOutboundLayersHTTP1 is one HTTP/1.1 GET through the outbound
// layers to an in-memory terminal: what the layers cost, no engine.
func BenchmarkOutboundLayersHTTP1(b *testing.B) {
	send := layeredRequest(b, false)
	b.ReportAllocs()
	for b.Loop() {
		send()
	}
}

// BenchmarkOutboundLayersGRPC is one unary gRPC call (a body each way,
// trailers) through the outbound layers to an in-memory terminal.
func BenchmarkOutboundLayersGRPC(b *testing.B) {
	send := layeredRequest(b, true)
	b.ReportAllocs()
	for b.Loop() {
		send()
	}
}

// BenchmarkInboundLayersGRPC is one unary gRPC call from a meshed client
// through the inbound layers to an in-memory terminal.
func BenchmarkInboundLayersGRPC(b *testing.B) {
	send := inboundLayeredRequest(b, true, nil)
	b.ReportAllocs()
	for b.Loop() {
		send()
	}
}

// layeredRequest returns a function that sends one request through the
// outbound layers to a terminal that answers from memory and allocates
// nothing.
func layeredRequest(t testing.TB, grpc bool) func() { return layeredRequestTapped(t, grpc, nil) }

// layeredRequestTapped is layeredRequest with the tap layer of taps in
// the stack, as Run assembles it; nil leaves it out.
func layeredRequestTapped(t testing.TB, grpc bool, taps *tap.Tap) func() {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	const name = "echo.test.svc.cluster.local:8080"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	out := outbound.New(ctx, staticResolver{name: {{Addr: netip.MustParseAddrPort("10.0.0.7:8080"),
		Labels: map[string]string{"namespace": "test", "service": "echo", "pod": "echo-0"}}}}, balance.DefaultOptions(), nil, quiet)
	reg, err := metrics.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stackConfig{metrics: reg, tunnelIdleTimeout: time.Hour, log: quiet, tap: taps}
	ci := &stack.ConnInfo{Direction: "outbound", OrigDst: netip.MustParseAddrPort("198.19.0.1:8080")}
	return layeredRequestThrough(ctx, t, grpc, name, ci, func(end stack.Handler) []stack.Layer { return outboundLayers(out, end, cfg) })
}

// inboundLayeredRequest returns a function that sends one request from a
// meshed client through the inbound layers, as Run assembles them with the
// controller's policy (the port's default allows it, no rate limit), to a
// terminal that answers from memory.
func inboundLayeredRequest(t testing.TB, grpc bool, taps *tap.Tap) func() {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := metrics.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	// a stored policy, as authzclient returns it
	policies := staticAuthz{8080: {Port: 8080, Default: authz.AllUnauthenticated}}
	cfg := stackConfig{metrics: reg, tunnelIdleTimeout: time.Hour, log: quiet, tap: taps, authz: policies}
	az := authorize.New(policies, reg, quiet)
	ci := &stack.ConnInfo{
		Direction: "inbound",
		OrigDst:   netip.MustParseAddrPort("10.0.0.7:8080"),
		Client:    netip.MustParseAddrPort("10.0.0.9:41000"),
		ClientID:  "spiffe://cluster.local/ns/test/sa/client",
		Target:    "10.0.0.7:8080", // as the listener sets it
	}
	return layeredRequestThrough(ctx, t, grpc, "echo:8080", ci, func(stack.Handler) []stack.Layer { return inboundLayers(cfg, az) })
}

// layeredRequestThrough returns a function that sends one request to
// authority, on a connection described by ci, through the layers made
// over a terminal that answers from memory and allocates nothing: a GET,
// or a unary gRPC call (a body each way, trailers).
func layeredRequestThrough(ctx context.Context, t testing.TB, grpc bool, authority string, ci *stack.ConnInfo, layers func(end stack.Handler) []stack.Layer) func() {
	grpcHeader := stack.Header{{Name: "content-type", Value: "application/grpc"}}
	trailers := stack.Header{{Name: "grpc-status", Value: "0"}}
	hello, world := []byte("0000hello"), []byte("0000world")
	var body, respBody reusableBody
	resp := &stack.Response{Status: 200}
	end := stack.HandlerFunc(func(_ context.Context, req *stack.Request) (*stack.Response, error) {
		if req.GotConn != nil {
			req.GotConn()
		}
		io.Copy(io.Discard, req.Body)
		return resp, nil
	})
	h := stack.Build(end, layers(end)...)
	req := &stack.Request{Conn: ci}
	return func() {
		*req = stack.Request{Method: "GET", Authority: authority, Path: "/", ProtoMajor: 1, Conn: ci, Body: stack.NoBody}
		*resp = stack.Response{Status: 200, Body: stack.NoBody}
		if grpc {
			body.reset(hello, nil)
			respBody.reset(world, trailers)
			*req = stack.Request{Method: "POST", Authority: authority, Path: "/echo.Echo/Say", ProtoMajor: 2, Conn: ci,
				Header: grpcHeader, Body: &body}
			*resp = stack.Response{Status: 200, Header: grpcHeader, Body: &respBody}
		}
		got, err := h.Serve(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, got.Body)
		got.Body.Close()
	}
}

// checkAllocBudget fails t when send allocates more than budget times a
// call; what names the path for the messages.
func checkAllocBudget(t *testing.T, what string, send func(), budget float64) {
	t.Helper()
	send()
	allocs := testing.AllocsPerRun(1000, send)
	t.Logf("%s: %v allocations per request", what, allocs)
	if allocs > budget {
		t.Errorf("%s: %v allocations per request, over the budget of %v", what, allocs, budget)
	}
}

// reusableBody is a body the test refills for each request.
type reusableBody struct {
	b        []byte
	trailers stack.Header
}

func (b *reusableBody) reset(p []byte, trailers stack.Header) { b.b, b.trailers = p, trailers }
func (b *reusableBody) Read(p []byte) (int, error) {
	if len(b.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.b)
	b.b = b.b[n:]
	return n, nil
}
func (b *reusableBody) Trailers() stack.Header { return b.trailers }
func (b *reusableBody) Close() error           { return nil }

// The HTTP/1 engine watches its own tunnels: it must not cut one before
// the -tunnel-idle-timeout the proxy was given.
func TestTheEnginesGetTheTunnelIdleTimeout(t *testing.T) {
	if got := newEngineConfig(3 * time.Hour).http1.TunnelIdleTimeout; got != 3*time.Hour {
		t.Errorf("h1 tunnel idle timeout %v, want the proxy's 3h", got)
	}
}
