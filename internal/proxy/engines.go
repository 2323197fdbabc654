package proxy

import (
	"log/slog"

	"github.com/skeinmesh/skein/internal/proxy/clientpool"
	"github.com/skeinmesh/skein/internal/proxy/h1"
)

// engines are the HTTP engines' Clients as the stacks make them.
func engines(log *slog.Logger) clientpool.Engines {
	return clientpool.Engines{
		HTTP1: func(d clientpool.Dial) clientpool.Client { return h1.NewClient(d, h1.DefaultConfig(), log) },
		// TODO(h2): the HTTP/2 engine's Client, once merged.
		HTTP2: func(d clientpool.Dial) clientpool.Client { return h1.NewClient(d, h1.DefaultConfig(), log) },
	}
}
