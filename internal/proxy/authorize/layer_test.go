package authorize

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// onePolicy is an authz.Lookup with one policy for every port.
type onePolicy struct{ in *authz.Inbound }

func (p onePolicy) Inbound(context.Context, uint16) (*authz.Inbound, error) { return p.in, nil }
func (p onePolicy) Watch(ctx context.Context, _ func())                     { <-ctx.Done() }

// layerAllocsAllowed budgets what the layer allocates for a request the
// default policy allows: the authz.Request Decide looks at and its header
// lookup. Reached when written: 2.
const layerAllocsAllowed = 2

// TestAllowedRequestAllocationBudget: a request the policy allows costs
// the layer no sentence (Decision.Reason is put together only when asked)
// and no log attributes (only denials and audits are logged).
func TestAllowedRequestAllocationBudget(t *testing.T) {
	reg, err := metrics.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	in := &authz.Inbound{Port: 8080, Default: authz.AllUnauthenticated}
	a := New(onePolicy{in}, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ok := &stack.Response{Status: 200, Body: stack.NoBody}
	h := a.Layer(stack.HandlerFunc(func(context.Context, *stack.Request) (*stack.Response, error) { return ok, nil }))
	ci := &stack.ConnInfo{
		Direction: "inbound",
		OrigDst:   netip.MustParseAddrPort("10.0.0.2:8080"),
		Client:    netip.MustParseAddrPort("10.0.0.1:40000"),
		ClientID:  "spiffe://cluster.local/ns/default/sa/web",
		Target:    "10.0.0.2:8080", // as the listener sets it
	}
	req := &stack.Request{Method: "GET", Path: "/items?page=2", Body: stack.NoBody, ProtoMajor: 1, Conn: ci}
	ctx := context.Background()
	send := func() {
		resp, err := h.Serve(ctx, req)
		if err != nil || resp.Status != 200 {
			t.Fatalf("allowed request: %v, %v", resp, err)
		}
	}
	send()
	allocs := testing.AllocsPerRun(1000, send)
	t.Logf("%v allocations per allowed request in the authorization layer", allocs)
	if allocs > layerAllocsAllowed {
		t.Fatalf("the authorization layer allocates %v times per allowed request, over the budget of %v", allocs, layerAllocsAllowed)
	}
}
