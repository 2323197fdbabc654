package outbound

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/skeinmesh/skein/internal/proxy/clientpool"
	"github.com/skeinmesh/skein/internal/proxy/h1"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// testEngines are the engines these tests send with: h1's Client, and
// until the HTTP/2 engine lands a stand-in for it.
//
// netHTTPClient stands in for an engine's Client in these tests: one
// request per connection, written and read by net/http's HTTP/1.1 code,
// errors before the request went out marked stack.NotSent as the engines
// do.
type netHTTPClient struct {
	dial    clientpool.Dial
	version string // what the test engine calls itself, in x-test-engine
}

func testEngines() clientpool.Engines {
	return clientpool.Engines{
		HTTP1: func(d clientpool.Dial) clientpool.Client {
			return h1.NewClient(d, h1.DefaultConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		},
		HTTP2: func(d clientpool.Dial) clientpool.Client { return &netHTTPClient{dial: d, version: "h2"} },
	}
}

func (c *netHTTPClient) CloseIdle() bool { return true }
func (c *netHTTPClient) Close()          {}

func (c *netHTTPClient) Serve(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		req.Body.Close()
		return nil, stack.NotSent(err)
	}
	if req.GotConn != nil {
		req.GotConn()
	}
	out, _ := http.NewRequestWithContext(ctx, req.Method, "http://"+req.Authority+req.Path, io.NopCloser(req.Body))
	for _, f := range req.Header {
		out.Header.Add(f.Name, f.Value)
	}
	if err := out.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), out)
	if err != nil {
		conn.Close()
		return nil, err
	}
	sr := &stack.Response{Status: resp.StatusCode, Body: &netHTTPBody{resp: resp, conn: conn}}
	for name, vs := range resp.Header {
		for _, v := range vs {
			sr.Header.Add(strings.ToLower(name), v)
		}
	}
	sr.Header.Add("x-test-engine", c.version)
	return sr, nil
}

type netHTTPBody struct {
	resp *http.Response
	conn net.Conn
}

func (b *netHTTPBody) Read(p []byte) (int, error) { return b.resp.Body.Read(p) }
func (b *netHTTPBody) Close() error               { return b.conn.Close() }
func (b *netHTTPBody) Trailers() stack.Header {
	var h stack.Header
	for name, vs := range b.resp.Trailer {
		for _, v := range vs {
			h.Add(strings.ToLower(name), v)
		}
	}
	return h
}
