package inbound

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/rawio"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// An opaque connection to the application is read and written raw, as the
// request path's connections are (see package rawio).
func TestDialledConnectionsAreRaw(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("raw I/O is Linux only")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ci := &stack.ConnInfo{Direction: "inbound", OrigDst: netip.MustParseAddrPort(ln.Addr().String())}
	c, err := New(false).Dial(context.Background(), ci)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*rawio.Conn); !ok {
		t.Errorf("connection is a %T, want *rawio.Conn", c)
	}
}
