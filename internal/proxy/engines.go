package proxy

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/clientpool"
	"github.com/skeinmesh/skein/internal/proxy/h1"
	"github.com/skeinmesh/skein/internal/proxy/h2"
	"github.com/skeinmesh/skein/internal/proxy/rawio"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// engineConfig is the engines' configuration: their defaults (see
// docs/proxy.md), with the tunnel idle timeout the proxy was given (the
// HTTP/1 engine watches its tunnels itself, the tunnel layer watches
// every engine's; neither may cut a tunnel before -tunnel-idle-timeout).
type engineConfig struct {
	http1 h1.Config
	http2 h2.Config
}

func newEngineConfig(tunnelIdleTimeout time.Duration) engineConfig {
	c := engineConfig{http1: h1.DefaultConfig(), http2: h2.DefaultConfig()}
	if tunnelIdleTimeout > 0 {
		c.http1.TunnelIdleTimeout = tunnelIdleTimeout
	}
	return c
}

// engines are the HTTP engines' Clients as the stacks make them.
func engines(cfg engineConfig, log *slog.Logger) clientpool.Engines {
	return clientpool.Engines{
		HTTP1: func(d clientpool.Dial) clientpool.Client { return h1.NewClient(rawDial(d), cfg.http1, log) },
		HTTP2: func(d clientpool.Dial) clientpool.Client { return h2.NewClient(rawDial(d), cfg.http2, log) },
	}
}

// rawDial is d with its plain TCP connections read and written raw (see
// package rawio); a mesh connection's TCP connection under its TLS was
// made raw by the mesh dialer.
func rawDial(d clientpool.Dial) clientpool.Dial {
	return func(ctx context.Context) (net.Conn, error) {
		c, err := d(ctx)
		if err != nil {
			return nil, err
		}
		return rawio.Wrap(c), nil
	}
}

// httpServers serve one direction's detected HTTP connections, one engine
// per version, both handing requests to the direction's stack.
type httpServers struct {
	http1 *h1.Server
	http2 *h2.Server
}

func newHTTPServers(h stack.Handler, cfg engineConfig, log *slog.Logger) *httpServers {
	return &httpServers{
		http1: h1.NewServer(h, cfg.http1, log),
		http2: h2.NewServer(h, cfg.http2, log),
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
