package clientpool

import (
	"context"
	"fmt"
	"net"
	"sync"

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

// ServeAlone sends req with an HTTP/1 Client of its own over the one
// connection dial opens, and closes that Client with the response body:
// for an HTTP/1 CONNECT, whose connection becomes the tunnel and carries
// nothing else. dest names the destination in errors.
func (e Engines) ServeAlone(ctx context.Context, req *stack.Request, dial Dial, dest string) (*stack.Response, error) {
	var once sync.Once
	client := e.HTTP1(func(ctx context.Context) (net.Conn, error) {
		var conn net.Conn
		err := fmt.Errorf("tunnel to %s: already connected once", dest)
		once.Do(func() { conn, err = dial(ctx) })
		return conn, err
	})
	resp, err := client.Serve(ctx, req)
	if err != nil {
		client.Close()
		return nil, err
	}
	resp.Body = &closingBody{Body: resp.Body, client: client}
	return resp, nil
}

// closingBody closes a one-request Client with its response body.
type closingBody struct {
	stack.Body
	client Client
}

func (b *closingBody) Close() error {
	err := b.Body.Close()
	b.client.Close()
	return err
}
