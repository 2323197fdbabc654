// Package authzclient is the proxy's authz.Lookup backed by the
// controller's Policy service: one WatchInbound stream per port of the
// proxy's own workload instance. The application's known ports
// (Options.Ports, the proxy's -inbound-ports) are watched from the start
// and for good, so their policy is there before the first request and
// through a later controller outage; any other port is watched from its
// first request, a bounded set of them, the first answer awaited briefly. It fails closed: a port whose
// policy never arrived (or that the controller does not know) is an
// error, which the authorization layer answers as deny. While the
// controller is away the last policy stays and the stream is opened again
// with back-off. It does not dial, and never imports Kubernetes packages.
package authzclient

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

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/authz/authzpb"
	policypb "github.com/skeinmesh/skein/proto/policy"
)

// ErrNotAnswered is returned (wrapped) by Inbound when the controller has
// never answered for the port: the caller denies.
var ErrNotAnswered = errors.New("the controller has not sent the port's inbound policy")

// ErrUnknownInstance is returned (wrapped) by Inbound when the controller
// answered that it knows no such instance: the caller denies.
var ErrUnknownInstance = errors.New("the controller knows no such workload instance")

// Defaults of Options.
const (
	DefaultMaxPorts   = 64
	DefaultWaitFirst  = time.Second
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 2 * time.Second
	// MaxKnownPorts bounds Options.Ports.
	MaxKnownPorts = 64
)

// Options say whose policy to watch and tune the Client.
type Options struct {
	// Namespace and Pod name the proxy's own instance (its -labels
	// namespace= and pod=); the controller checks them against the
	// proxy's certificate.
	Namespace, Pod string
	// Workload (-labels workload=) lets the controller answer for a
	// Workload instance it numbers differently (skein up publishes only
	// ready instances).
	Workload string
	Log      *slog.Logger
	// MaxPorts bounds the ports watched at once (default 64, or the
	// application's ports when fewer are known); past it the least
	// recently looked-up port is dropped.
	MaxPorts int
	// Ports are the application's own ports: watched from New on, never
	// dropped, and not counted in MaxPorts. At most MaxKnownPorts.
	Ports []uint16
	// WaitFirst bounds the wait for a port's first answer (default 1s).
	WaitFirst time.Duration
	// MinBackoff and MaxBackoff bound the wait before a broken stream is
	// opened again (defaults 100ms and 2s).
	MinBackoff, MaxBackoff time.Duration
}

// Client implements authz.Lookup over the Policy service.
type Client struct {
	client policypb.PolicyClient
	opts   Options
	ctx    context.Context // owns every watch

	mu     sync.Mutex
	byPort map[uint16]*list.Element // of *watch
	lru    list.List                // front: most recently looked up
	// known are the watches of Options.Ports: never dropped.
	known map[uint16]*watch
	// watchers are the Watch calls' wake-up slots.
	watchers map[chan struct{}]struct{}
}

var _ authz.Lookup = (*Client)(nil)

// New returns a Client whose streams run on conn and end with ctx; the
// streams of opts.Ports are opened at once. More than MaxKnownPorts
// ports is an error.
func New(ctx context.Context, conn grpc.ClientConnInterface, opts Options) (*Client, error) {
	if len(opts.Ports) > MaxKnownPorts {
		return nil, fmt.Errorf("%d known inbound ports, more than the %d the proxy watches", len(opts.Ports), MaxKnownPorts)
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.MaxPorts <= 0 {
		opts.MaxPorts = DefaultMaxPorts
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
	opts.Log = opts.Log.With("component", "authzclient", "namespace", opts.Namespace, "pod", opts.Pod)
	c := &Client{client: policypb.NewPolicyClient(conn), opts: opts, ctx: ctx,
		byPort: map[uint16]*list.Element{}, known: map[uint16]*watch{}, watchers: map[chan struct{}]struct{}{}}
	for _, port := range opts.Ports {
		if _, ok := c.known[port]; !ok {
			c.known[port] = c.start(port)
		}
	}
	return c, nil
}

// watch is one port's stream and what it said last.
type watch struct {
	port      uint16
	policy    atomic.Pointer[answer]
	ready     chan struct{} // closed on the first answer
	once      sync.Once
	waitUntil time.Time
	cancel    context.CancelFunc
}

// answer is a policy as received; nil means the instance is unknown.
type answer struct{ policy *authz.Inbound }

// Inbound implements authz.Lookup: the port's last policy, or, for a port
// not watched yet, its first answer, waited for up to WaitFirst (and ctx).
func (c *Client) Inbound(ctx context.Context, port uint16) (*authz.Inbound, error) {
	w := c.get(port)
	a := w.policy.Load()
	if a == nil {
		if left := time.Until(w.waitUntil); left > 0 {
			t := time.NewTimer(left)
			defer t.Stop()
			select {
			case <-w.ready:
			case <-ctx.Done():
			case <-t.C:
				c.opts.Log.Warn("the controller has not sent an inbound policy yet: denying", "port", port, "waited", c.opts.WaitFirst)
			}
		}
		a = w.policy.Load()
	}
	switch {
	case a == nil:
		return nil, fmt.Errorf("inbound policy of port %d: %w", port, ErrNotAnswered)
	case a.policy == nil:
		return nil, fmt.Errorf("inbound policy of %s/%s port %d: %w", c.opts.Namespace, c.opts.Pod, port, ErrUnknownInstance)
	}
	return a.policy, nil
}

// Watch implements authz.Lookup: changed is called from one goroutine
// after every change of any port's policy, until ctx ends. Changes that
// come while changed runs are folded into one more call.
func (c *Client) Watch(ctx context.Context, changed func()) {
	wake := make(chan struct{}, 1)
	c.mu.Lock()
	c.watchers[wake] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.watchers, wake)
		c.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
			changed()
		}
	}
}

func (c *Client) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for wake := range c.watchers {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

// get returns the watch of port, starting it (and dropping the least
// recently used one past the bound) if there is none.
func (c *Client) get(port uint16) *watch {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.known[port]; ok {
		return w
	}
	if el, ok := c.byPort[port]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*watch)
	}
	for c.lru.Len() >= c.opts.MaxPorts {
		old := c.lru.Remove(c.lru.Back()).(*watch)
		old.cancel()
		delete(c.byPort, old.port)
	}
	w := c.start(port)
	c.byPort[port] = c.lru.PushFront(w)
	return w
}

// start opens the stream of port's policy; it runs until c.ctx ends or
// the watch is cancelled.
func (c *Client) start(port uint16) *watch {
	ctx, cancel := context.WithCancel(c.ctx)
	w := &watch{port: port, ready: make(chan struct{}), waitUntil: time.Now().Add(c.opts.WaitFirst), cancel: cancel}
	go c.run(ctx, w)
	return w
}

// Watched is how many ports are watched now.
func (c *Client) Watched() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len() + len(c.known)
}

// Answered reports whether the controller has answered for port (a
// policy, or that it knows no such instance).
func (c *Client) Answered(port uint16) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.known[port]; ok {
		return w.policy.Load() != nil
	}
	if el, ok := c.byPort[port]; ok {
		return el.Value.(*watch).policy.Load() != nil
	}
	return false
}

// run keeps a stream open for w until ctx is done.
func (c *Client) run(ctx context.Context, w *watch) {
	log := c.opts.Log.With("port", w.port)
	wait := c.opts.MinBackoff
	for {
		received, err := c.stream(ctx, w)
		if ctx.Err() != nil {
			return
		}
		if received {
			wait = c.opts.MinBackoff
		}
		delay := time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
		log.Warn("inbound policy stream ended; keeping the last policy and reconnecting", "err", err, "retry_in", delay.Round(time.Millisecond))
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
func (c *Client) stream(ctx context.Context, w *watch) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.client.WatchInbound(ctx, &policypb.InboundRequest{Namespace: c.opts.Namespace, Pod: c.opts.Pod, Workload: c.opts.Workload, Port: uint32(w.port)}, grpc.WaitForReady(true))
	if err != nil {
		return false, fmt.Errorf("opening inbound policy stream: %w", err)
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return received, errors.New("controller closed the inbound policy stream")
		}
		if err != nil {
			return received, fmt.Errorf("receiving inbound policy: %w", err)
		}
		received = true
		p, err := authzpb.FromProto(m)
		if err != nil {
			// Keep the last good policy rather than apply half of one.
			return false, fmt.Errorf("inbound policy from the controller refused: %w", err)
		}
		w.policy.Store(&answer{p})
		w.once.Do(func() { close(w.ready) })
		c.notify()
	}
}
