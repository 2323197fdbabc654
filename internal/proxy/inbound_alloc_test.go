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
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/proxy/tap"
)

// Budgets of what the inbound layers (metrics, errors, authorize, rate
// limit, tunnel watch) allocate per request a meshed client may make, over
// a terminal that allocates nothing: what they reached when written (see
// the test).
const (
	// the request authorize hands authz.Decide and its header lookup.
	inboundAllocsHTTP = 2
	// the same, plus the metrics layer's wrapper that reads grpc-status
	// from the trailers.
	inboundAllocsGRPC = 3
)

func TestInboundLayersAllocationBudget(t *testing.T) {
	for _, c := range []struct {
		name   string
		grpc   bool
		budget float64
		taps   *tap.Tap
	}{
		{"HTTP GET", false, inboundAllocsHTTP, nil},
		{"gRPC unary", true, inboundAllocsGRPC, nil},
		{"gRPC unary, tap idle", true, inboundAllocsGRPC, tap.New(tap.Config{})},
	} {
		t.Run(c.name, func(t *testing.T) {
			send := inboundLayeredRequest(t, c.grpc, c.taps)
			send()
			allocs := testing.AllocsPerRun(1000, send)
			t.Logf("%s: %v allocations per request in the inbound layers", c.name, allocs)
			if allocs > c.budget {
				t.Errorf("%s: the inbound layers allocate %v times per request, over the budget of %v", c.name, allocs, c.budget)
			}
		})
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
	grpcHeader := stack.Header{{Name: "content-type", Value: "application/grpc"}}
	trailers := stack.Header{{Name: "grpc-status", Value: "0"}}
	hello, world := []byte("0000hello"), []byte("0000world")
	ci := &stack.ConnInfo{
		Direction: "inbound",
		OrigDst:   netip.MustParseAddrPort("10.0.0.7:8080"),
		Client:    netip.MustParseAddrPort("10.0.0.9:41000"),
		ClientID:  "spiffe://cluster.local/ns/test/sa/client",
		Target:    "10.0.0.7:8080", // as the listener sets it
	}
	var body, respBody reusableBody
	resp := &stack.Response{Status: 200}
	end := stack.HandlerFunc(func(_ context.Context, req *stack.Request) (*stack.Response, error) {
		io.Copy(io.Discard, req.Body)
		return resp, nil
	})
	h := stack.Build(end, inboundLayers(cfg, az)...)
	req := &stack.Request{Conn: ci}
	return func() {
		*req = stack.Request{Method: "GET", Authority: "echo:8080", Path: "/", ProtoMajor: 2, Conn: ci, Body: stack.NoBody}
		*resp = stack.Response{Status: 200, Body: stack.NoBody}
		if grpc {
			body.reset(hello, nil)
			respBody.reset(world, trailers)
			*req = stack.Request{Method: "POST", Authority: "echo:8080", Path: "/echo.Echo/Say", ProtoMajor: 2, Conn: ci,
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
