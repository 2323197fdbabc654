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
// a terminal that allocates nothing: what they reached when written
// (TestLayersAllocationBudget).
const (
	// the request authorize hands authz.Decide and its header lookup.
	inboundAllocsHTTP = 2
	// the same, plus the metrics layer's wrapper that reads grpc-status
	// from the trailers.
	inboundAllocsGRPC = 3
)

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
	ci := &stack.ConnInfo{
		Direction: "inbound",
		OrigDst:   netip.MustParseAddrPort("10.0.0.7:8080"),
		Client:    netip.MustParseAddrPort("10.0.0.9:41000"),
		ClientID:  "spiffe://cluster.local/ns/test/sa/client",
		Target:    "10.0.0.7:8080", // as the listener sets it
	}
	return layeredRequestThrough(ctx, t, grpc, "echo:8080", ci, func(stack.Handler) []stack.Layer { return inboundLayers(cfg, az) })
}
