// Package policyclient is the proxy's routes.Lookup backed by the
// controller's Policy service: one WatchOutbound stream per destination the
// workload calls, a bounded set of them (least recently used dropped), the
// first answer awaited briefly and every later lookup served from memory.
// While the controller is away the last policy stays and the stream is
// opened again with back-off. It does not dial: the caller passes the
// connection the destination client uses. It never imports Kubernetes
// packages.
package policyclient

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/skeinmesh/skein/internal/routes"
	"github.com/skeinmesh/skein/internal/routes/routespb"
	policypb "github.com/skeinmesh/skein/proto/policy"
)

// ErrNotAnswered is returned (wrapped) by Policy when the controller has
// not answered for a destination within the first-answer wait: the caller
// goes on as without a policy, and a later lookup finds the answer once it
// came. It is routes.ErrNotAnswered, which the route layer looks for.
var ErrNotAnswered = routes.ErrNotAnswered

// Defaults of Options.
const (
	DefaultMaxDestinations = 1000
	DefaultWaitFirst       = 500 * time.Millisecond
	DefaultMinBackoff      = 100 * time.Millisecond
	DefaultMaxBackoff      = 2 * time.Second
)

// Options tune a Client; the zero value is usable.
type Options struct {
	// ClientID is the proxy's identity, for the controller's logs.
	ClientID string
	Log      *slog.Logger
	// MaxDestinations bounds the destinations watched at once; the least
	// recently looked-up one is dropped past it (default 1000).
	MaxDestinations int
	// WaitFirst bounds the wait for a destination's first answer, once per
	// watch: later lookups do not wait again (default 1s).
	WaitFirst time.Duration
	// MinBackoff and MaxBackoff bound the wait before a broken stream is
	// opened again (defaults 100ms and 2s), doubling after a stream that
	// delivered nothing.
	MinBackoff, MaxBackoff time.Duration
	// Received, if set, is called with each policy as it arrives, before
	// any request uses it (the mirror layer makes its series exist).
	Received func(*routes.Policy)
}

// Client implements routes.Lookup over the Policy service.
type Client struct {
	client policypb.PolicyClient
	opts   Options
	ctx    context.Context // owns every watch

	mu    sync.Mutex
	byDst map[string]*list.Element // of *watch
	lru   list.List                // front: most recently looked up

	// streamEnded, when set (by tests), is called each time a stream ends
	// while its watch is still wanted.
	streamEnded func(dst string, err error)
}

var _ routes.Lookup = (*Client)(nil)

// New returns a Client whose watches open streams on conn and end with
// ctx.
func New(ctx context.Context, conn grpc.ClientConnInterface, opts Options) *Client {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.MaxDestinations <= 0 {
		opts.MaxDestinations = DefaultMaxDestinations
	}
	if opts.WaitFirst <= 0 {
		opts.WaitFirst = DefaultWaitFirst
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	return &Client{client: policypb.NewPolicyClient(conn), opts: opts, ctx: ctx, byDst: map[string]*list.Element{}}
}

// watch is one destination's stream and what it said last.
type watch struct {
	dst       string
	policy    atomic.Pointer[answer]
	ready     chan struct{} // closed on the first answer
	once      sync.Once
	waitUntil time.Time
	cancel    context.CancelFunc
}

// answer is a policy as received; a nil policy is an answer too (none).
type answer struct{ policy *routes.Policy }

func (w *watch) set(p *routes.Policy) {
	w.policy.Store(&answer{p})
	w.once.Do(func() { close(w.ready) })
}

// Policy implements routes.Lookup: the destination's last policy from
// memory, or, for a destination not watched yet, its first answer, waited
// for up to WaitFirst (and ctx). Without an answer by then it returns an
// error wrapping ErrNotAnswered.
func (c *Client) Policy(ctx context.Context, dst string) (*routes.Policy, error) {
	w := c.get(dst)
	if a := w.policy.Load(); a != nil {
		return a.policy, nil
	}
	if left := time.Until(w.waitUntil); left > 0 {
		t := time.NewTimer(left)
		defer t.Stop()
		select {
		case <-w.ready:
		case <-ctx.Done():
		case <-t.C:
			c.opts.Log.Warn("the controller has not sent a policy yet", "dst", dst, "waited", c.opts.WaitFirst)
		}
	}
	if a := w.policy.Load(); a != nil {
		return a.policy, nil
	}
	return nil, fmt.Errorf("policy of %s: %w", dst, ErrNotAnswered)
}

// get returns the watch of dst, starting it (and dropping the least
// recently used one past the bound) if there is none.
func (c *Client) get(dst string) *watch {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byDst[dst]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*watch)
	}
	for c.lru.Len() >= c.opts.MaxDestinations {
		old := c.lru.Remove(c.lru.Back()).(*watch)
		old.cancel()
		delete(c.byDst, old.dst)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	w := &watch{dst: dst, ready: make(chan struct{}), waitUntil: time.Now().Add(c.opts.WaitFirst), cancel: cancel}
	c.byDst[dst] = c.lru.PushFront(w)
	go c.run(ctx, w)
	return w
}

// Watched is how many destinations are watched now.
func (c *Client) Watched() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// run keeps a stream open for w until ctx is done.
func (c *Client) run(ctx context.Context, w *watch) {
	log := c.opts.Log.With("dst", w.dst)
	wait := c.opts.MinBackoff
	for {
		received, err := c.stream(ctx, w)
		if ctx.Err() != nil {
			return
		}
		if c.streamEnded != nil {
			c.streamEnded(w.dst, err)
		}
		if received {
			wait = c.opts.MinBackoff
		}
		delay := time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
		log.Warn("policy stream ended; keeping the last policy and reconnecting", "err", err, "retry_in", delay.Round(time.Millisecond))
		wait = min(2*wait, c.opts.MaxBackoff)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// stream opens one stream and stores each policy it brings until it ends.
// It reports whether any arrived.
func (c *Client) stream(ctx context.Context, w *watch) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// WaitForReady: while the controller is away the call waits for the
	// connection instead of failing at once.
	stream, err := c.client.WatchOutbound(ctx, &policypb.OutboundRequest{Target: w.dst, ClientId: c.opts.ClientID}, grpc.WaitForReady(true))
	if err != nil {
		return false, fmt.Errorf("opening policy stream: %w", err)
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return received, errors.New("controller closed the policy stream")
		}
		if err != nil {
			return received, fmt.Errorf("receiving policy: %w", err)
		}
		received = true
		p, err := routespb.FromProto(m)
		if err != nil {
			// Keep the last good policy rather than apply half of one, and
			// back off: the next stream may well bring the same.
			return false, fmt.Errorf("policy from the controller refused: %w", err)
		}
		if c.opts.Received != nil {
			c.opts.Received(p)
		}
		w.set(p)
	}
}
