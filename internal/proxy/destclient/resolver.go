// Package destclient is the proxy's discovery.Resolver backed by the
// controller's Destination service: one gRPC stream per watched destination,
// applied to a local copy and handed on as full endpoint sets. It keeps the
// last known state while the controller is away and reconnects with
// back-off. It does not dial or configure TLS: the caller passes a
// connection. It never imports Kubernetes packages.
package destclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
	destinationpb "github.com/skeinmesh/skein/proto/destination"
)

// Options tune a Resolver; the zero value is usable.
type Options struct {
	// ClientID is the proxy's identity, sent with each request for the
	// controller's logs.
	ClientID string
	// Log defaults to slog.Default().
	Log *slog.Logger
	// MinBackoff and MaxBackoff bound the wait before a broken stream is
	// opened again (defaults 100ms and 2s). The wait doubles after each
	// stream that ended without a message and resets after one that
	// delivered some.
	MinBackoff, MaxBackoff time.Duration
}

// Resolver implements discovery.Resolver over the Destination service.
type Resolver struct {
	client   destinationpb.DestinationClient
	clientID string
	log      *slog.Logger
	min, max time.Duration

	// streamEnded, when set (by tests), is called each time a stream ends
	// while its watch is still wanted.
	streamEnded func(dst string, err error)
}

var _ discovery.Resolver = (*Resolver)(nil)

// New returns a Resolver that opens its streams on conn. Dial conn with
// ConnectParams (or similarly short reconnect back-off): streams wait for the
// connection to be ready, so how soon a returning controller is noticed is
// up to the connection's own back-off.
func New(conn grpc.ClientConnInterface, opts Options) *Resolver {
	r := &Resolver{
		client:   destinationpb.NewDestinationClient(conn),
		clientID: opts.ClientID,
		log:      opts.Log,
		min:      opts.MinBackoff,
		max:      opts.MaxBackoff,
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.min <= 0 {
		r.min = 100 * time.Millisecond
	}
	if r.max <= 0 {
		r.max = 2 * time.Second
	}
	if r.max < r.min {
		r.max = r.min
	}
	return r
}

// ConnectParams is the reconnect back-off a connection to the controller
// should be dialled with (grpc.WithConnectParams): gRPC's default grows to
// two minutes, far too slow to notice a controller that came back.
func ConnectParams() grpc.ConnectParams {
	return grpc.ConnectParams{
		Backoff: backoff.Config{
			BaseDelay:  100 * time.Millisecond,
			Multiplier: 1.6,
			Jitter:     0.2,
			MaxDelay:   time.Second,
		},
		MinConnectTimeout: 5 * time.Second,
	}
}

// Watch implements discovery.Resolver. It starts one stream for dst and
// calls update with a full set (Exists true) after every message, or with
// Exists false when the controller does not know dst. When the stream
// breaks, the last set stays as it is (update is not called) until a new
// stream's first message replaces it. If the controller cannot be reached
// at the start, update is not called at all until it can: the proxy's own
// wait for a first answer decides when to fall back. The sets passed to
// update are not modified later.
func (r *Resolver) Watch(ctx context.Context, dst string, update func(discovery.EndpointSet)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	go r.run(ctx, dst, update)
	return nil
}

// run keeps a stream open for dst until ctx is done.
func (r *Resolver) run(ctx context.Context, dst string, update func(discovery.EndpointSet)) {
	log := r.log.With("dst", dst)
	var (
		last  discovery.EndpointSet
		known bool // last has been passed to update
		wait  = r.min
	)
	report := func(set discovery.EndpointSet) {
		if known && sameSet(last, set) {
			return
		}
		last, known = set, true
		update(set)
	}
	for {
		received, err := r.stream(ctx, dst, log, report)
		if ctx.Err() != nil {
			return
		}
		if r.streamEnded != nil {
			r.streamEnded(dst, err)
		}
		if received {
			wait = r.min
		}
		delay := jitter(wait)
		log.Warn("destination stream ended; keeping the last endpoints and reconnecting",
			"err", err, "retry_in", delay.Round(time.Millisecond))
		wait = min(2*wait, r.max)

		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// stream opens one stream and applies its messages until it ends. It
// reports whether any message arrived.
func (r *Resolver) stream(ctx context.Context, dst string, log *slog.Logger, report func(discovery.EndpointSet)) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// WaitForReady: while the controller is away the call waits for the
	// connection instead of failing at once, and starts as soon as the
	// connection is ready again.
	stream, err := r.client.Get(ctx, &destinationpb.GetDestination{Path: dst, ClientId: r.clientID}, grpc.WaitForReady(true))
	if err != nil {
		return false, fmt.Errorf("opening destination stream: %w", err)
	}
	var state endpointState
	for {
		u, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return received, errors.New("controller closed the destination stream")
		}
		if err != nil {
			return received, fmt.Errorf("receiving destination update: %w", err)
		}
		received = true
		set, err := state.apply(u, log)
		if err != nil {
			return received, err
		}
		report(set)
	}
}

// jitter spreads d over [0.8d, 1.2d) so that proxies cut off together do
// not come back together.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
