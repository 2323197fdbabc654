package outbound

import (
	"context"
	"net/netip"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
)

// Resolving a request to a destination discovery has answered for is on
// every request's path: it must not allocate, with or without an identity
// (the fail-closed checks are only on the slow path).
func TestResolvingAnAnsweredDestinationDoesNotAllocate(t *testing.T) {
	vip := netip.MustParseAddrPort("198.19.0.1:8080")
	const name = "echo.test.svc.cluster.local:8080"
	eps := []discovery.Endpoint{{Addr: netip.MustParseAddrPort("198.18.0.5:8080"), Identity: "spiffe://cluster.local/ns/test/sa/echo"}}
	for _, meshed := range []bool{false, true} {
		var u *Upstream
		if meshed {
			u = newMeshedUpstream(t, staticResolver{name: eps}, 0)
		} else {
			u = newUpstream(t, staticResolver{name: eps})
		}
		ctx := context.Background()
		allocs := testing.AllocsPerRun(1000, func() {
			if d, err := u.resolve(ctx, name, vip); d == nil || err != nil {
				t.Fatalf("resolve: %v, %v", d, err)
			}
		})
		if allocs > 0 {
			t.Errorf("identity %v: resolving a known destination allocates %v times, want 0", meshed, allocs)
		}
	}
}
