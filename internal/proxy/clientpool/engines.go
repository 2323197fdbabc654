package clientpool

import (
	"context"
	"net"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// Client is an engine's client (h1.Client, h2.Client): a pool of
// connections to one upstream address, which dial opens.
type Client interface {
	stack.Handler
	Entry
}

// Dial opens one connection to a Client's upstream: plain TCP, TPROXY from
// a client's address, or mesh TLS.
type Dial func(ctx context.Context) (net.Conn, error)

// Engines make the Clients of each HTTP version, so that the layers that
// choose a Client do not depend on an engine's package.
type Engines struct {
	HTTP1 func(Dial) Client
	HTTP2 func(Dial) Client
}

// For returns the maker of Clients that speak HTTP major version major.
func (e Engines) For(major int) func(Dial) Client {
	if major == 2 {
		return e.HTTP2
	}
	return e.HTTP1
}
