package inbound

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/httpproxy"
)

// In TPROXY mode every client address gets a pool of its own; the number of
// pools must not be the clients' to choose.
func TestSourcePoolsAreBounded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u := New(ctx, true)
	first := netip.MustParseAddrPort("[fd00::1]:40000")
	u.transportsFor(&httpproxy.ConnInfo{Client: first})
	for i := range 3 * maxSourcePools {
		src := netip.MustParseAddrPort(fmt.Sprintf("[fd00::1:%x]:40000", i+1))
		u.transportsFor(&httpproxy.ConnInfo{Client: src})
	}
	if n := len(u.bySource); n != maxSourcePools {
		t.Errorf("%d pools after %d client addresses, want %d", n, 3*maxSourcePools+1, maxSourcePools)
	}
	if _, ok := u.bySource[first.Addr()]; ok {
		t.Errorf("the least recently used address %s still has a pool", first.Addr())
	}
}
