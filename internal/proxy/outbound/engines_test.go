package outbound

import (
	"log/slog"

	"github.com/skeinmesh/skein/internal/proxy/clientpool"
	"github.com/skeinmesh/skein/internal/proxy/h1"
	"github.com/skeinmesh/skein/internal/proxy/h2"
)

// testEngines are the engines these tests send with: the real ones.
func testEngines() clientpool.Engines {
	log := slog.New(slog.DiscardHandler)
	return clientpool.Engines{
		HTTP1: func(d clientpool.Dial) clientpool.Client { return h1.NewClient(d, h1.DefaultConfig(), log) },
		HTTP2: func(d clientpool.Dial) clientpool.Client { return h2.NewClient(d, h2.DefaultConfig(), log) },
	}
}
