package proxy

import (
	"context"
	"log/slog"

	"github.com/skeinmesh/skein/internal/proxy/clientpool"
	"github.com/skeinmesh/skein/internal/proxy/h1"
	"github.com/skeinmesh/skein/internal/proxy/h2"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// engines are the HTTP engines' Clients as the stacks make them, with the
// engines' default limits (see docs/proxy.md).
func engines(log *slog.Logger) clientpool.Engines {
	return clientpool.Engines{
		HTTP1: func(d clientpool.Dial) clientpool.Client { return h1.NewClient(d, h1.DefaultConfig(), log) },
		HTTP2: func(d clientpool.Dial) clientpool.Client { return h2.NewClient(d, h2.DefaultConfig(), log) },
	}
}

// httpServers serve one direction's detected HTTP connections, one engine
// per version, both handing requests to the direction's stack.
type httpServers struct {
	http1 *h1.Server
	http2 *h2.Server
}

func newHTTPServers(h stack.Handler, log *slog.Logger) *httpServers {
	return &httpServers{
		http1: h1.NewServer(h, h1.DefaultConfig(), log),
		http2: h2.NewServer(h, h2.DefaultConfig(), log),
	}
}

// shutdown drains both engines: HTTP/2 clients get GOAWAY, idle HTTP/1
// connections close, in-flight requests and tunnels get until ctx ends.
func (s *httpServers) shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.http2.Shutdown(ctx) }()
	err := s.http1.Shutdown(ctx)
	if err2 := <-done; err == nil {
		err = err2
	}
	return err
}
