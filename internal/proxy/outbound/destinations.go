package outbound

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
)

// destination is one watched logical destination and its balancer.
type destination struct {
	key      string
	balancer *balance.Balancer
	breakers *destBreakers
	meshed   *meshedAddrs
	set      atomic.Pointer[discovery.EndpointSet]
	ready    chan struct{} // closed on the first update
	once     sync.Once
	// waitUntil ends the one wait for a first answer: requests that come
	// later do not wait again.
	waitUntil time.Time
	lastUsed  atomic.Int64 // unix nanoseconds
	cancel    context.CancelFunc
}

func (d *destination) update(set discovery.EndpointSet) {
	d.meshed.note(set.Endpoints, time.Now())
	d.set.Store(&set)
	d.balancer.Update(set.Endpoints)
	d.once.Do(func() { close(d.ready) })
}

// exists reports whether discovery knows the destination. Before the first
// answer it does not.
func (d *destination) exists() bool {
	s := d.set.Load()
	return s != nil && s.Exists
}

// answered reports whether discovery has said anything about the
// destination yet, be it that it does not exist.
func (d *destination) answered() bool {
	return d.set.Load() != nil
}

// destinations keeps one watch per destination the workload talks to and
// drops those it stopped using.
type destinations struct {
	resolver    discovery.Resolver
	balance     balance.Options
	waitFirst   time.Duration
	idleTimeout time.Duration
	meshed      *meshedAddrs
	log         *slog.Logger
	// counters count breaker changes once CountBreakerChanges set them.
	counters atomic.Pointer[breakerCounters]

	ctx context.Context // owns every watch
	mu  sync.Mutex
	m   map[string]*destination
}

func newDestinations(ctx context.Context, r discovery.Resolver, opts balance.Options, log *slog.Logger) *destinations {
	return &destinations{
		resolver:    r,
		balance:     opts,
		waitFirst:   2 * time.Second,
		idleTimeout: 10 * time.Minute,
		meshed:      newMeshedAddrs(meshedTTL, meshedMax),
		log:         log,
		ctx:         ctx,
		m:           make(map[string]*destination),
	}
}

// get returns the destination for key, watching it from now on if it was
// not watched yet. It does not wait for discovery's answer: see wait.
func (ds *destinations) get(key string) *destination {
	ds.mu.Lock()
	d, ok := ds.m[key]
	if !ok {
		d = ds.watch(key)
		ds.m[key] = d
	}
	ds.mu.Unlock()
	d.lastUsed.Store(time.Now().UnixNano())
	return d
}

// wait waits for discovery's first answer about d, at most until waitFirst
// after the watch started: only the requests that arrive in that window
// wait, later ones find out at once that there is no answer.
func (ds *destinations) wait(ctx context.Context, d *destination) {
	if d.answered() {
		return
	}
	left := time.Until(d.waitUntil)
	if left <= 0 {
		return
	}
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-d.ready:
	case <-ctx.Done():
	case <-t.C:
		ds.log.Warn("discovery has not answered yet", "destination", d.key, "waited", ds.waitFirst)
	}
}

// watch starts watching key; the caller holds ds.mu.
func (ds *destinations) watch(key string) *destination {
	ctx, cancel := context.WithCancel(ds.ctx)
	d := &destination{
		key:       key,
		meshed:    ds.meshed,
		ready:     make(chan struct{}),
		waitUntil: time.Now().Add(ds.waitFirst),
		cancel:    cancel,
	}
	opts := ds.balance
	opts.OnBreaker = func(ev balance.BreakerEvent) {
		if c := ds.counters.Load(); c != nil {
			c.count(d.breakers, ev)
		}
	}
	d.balancer = balance.New(opts)
	d.breakers = newDestBreakers(key, d.balancer, ds.balance.Breaker)
	if err := ds.resolver.Watch(ctx, key, d.update); err != nil {
		ds.log.Warn("watching destination", "destination", key, "err", err)
		d.update(discovery.EndpointSet{Exists: false})
	}
	return d
}

// run drops destinations unused for idleTimeout until ctx ends.
func (ds *destinations) run(ctx context.Context) {
	t := time.NewTicker(ds.idleTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			ds.mu.Lock()
			for key, d := range ds.m {
				if now.Sub(time.Unix(0, d.lastUsed.Load())) > ds.idleTimeout {
					d.cancel()
					delete(ds.m, key)
				}
			}
			ds.mu.Unlock()
		}
	}
}
