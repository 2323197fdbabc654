// Package inbound carries connections and requests that arrive for the
// workload on to the application, at the address the client dialled. In
// TPROXY mode it connects from the client's own address so the application
// sees who is calling.
package inbound

import (
	"context"
	"net"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/origdst"
	"github.com/skeinmesh/skein/internal/proxy/rawio"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// tproxyMark marks the proxy's transparent connections to the application;
// the tproxy rules of skein-init route the answers back to the proxy by it.
const tproxyMark = 0x539

const connectTimeout = 3 * time.Second

// maxSourcePools bounds how many client addresses have engine Clients of
// their own in TPROXY mode: the addresses are the clients' to choose (an
// IPv6 client may hold a whole /64), so past this many the least recently
// used pool is dropped to make room.
const maxSourcePools = 1024

// Upstream forwards inbound traffic to the application: connections
// (Dial) and requests (Handler).
type Upstream struct {
	transparent bool
}

// New returns an Upstream; transparent selects TPROXY mode.
func New(transparent bool) *Upstream {
	return &Upstream{transparent: transparent}
}

// Dial connects to the application for the connection described by ci. The
// connection is read and written raw (see package rawio), as the request
// path's connections are.
func (u *Upstream) Dial(ctx context.Context, ci *stack.ConnInfo) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var c net.Conn
	var err error
	if u.transparent && ci.Client.IsValid() {
		c, err = origdst.DialContext(ctx, "tcp", ci.OrigDst.String(), origdst.DialOptions{
			Mark:              tproxyMark,
			TransparentSource: ci.Client.Addr(),
		})
	} else {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", ci.OrigDst.String())
	}
	if err != nil {
		return nil, err
	}
	return rawio.Wrap(c), nil
}
