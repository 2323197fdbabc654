// Package clientpool keeps the engine Clients the proxy sends requests
// with, one per key that discovery or a client chose (an endpoint and the
// identity it must prove, a TPROXY source address). The number of keys is
// bounded: past the cap the least recently used entry is retired. Idle
// connections are closed and empty entries dropped by a sweep. It does not
// dial or speak HTTP itself.
package clientpool

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// SweepEvery is how often Run closes idle connections and drops entries
// left with none.
const SweepEvery = 30 * time.Second

// Entry is what a Pool keeps per key: an engine Client, or a few of them.
type Entry interface {
	// CloseIdle closes the connections with nothing in flight and reports
	// whether none is left.
	CloseIdle() (empty bool)
	// Close closes every connection.
	Close()
}

// Pool maps keys to entries made on first use, at most max of them.
type Pool[K comparable, E Entry] struct {
	max  int
	make func(K) E

	mu      sync.Mutex
	byKey   map[K]*list.Element // of *item[K, E]
	lru     list.List           // front: most recently used
	retired []E                 // evicted entries with requests still in flight
}

type item[K comparable, E Entry] struct {
	key   K
	entry E
}

// New returns a pool of at most max entries (max > 0) made by make.
func New[K comparable, E Entry](max int, make func(K) E) *Pool[K, E] {
	p := &Pool[K, E]{max: max, make: make, byKey: map[K]*list.Element{}}
	return p
}

// Get returns the entry for k, making it if there is none. When the pool
// is full the least recently used entry is retired: it takes no new
// requests, and its connections close once their requests end.
func (p *Pool[K, E]) Get(k K) E {
	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.byKey[k]; ok {
		p.lru.MoveToFront(el)
		return el.Value.(*item[K, E]).entry
	}
	if p.lru.Len() >= p.max {
		p.retireOldest()
	}
	it := &item[K, E]{key: k, entry: p.make(k)}
	p.byKey[k] = p.lru.PushFront(it)
	return it.entry
}

// retireOldest drops the least recently used entry; the caller holds p.mu.
func (p *Pool[K, E]) retireOldest() {
	el := p.lru.Back()
	if el == nil {
		return
	}
	it := p.lru.Remove(el).(*item[K, E])
	delete(p.byKey, it.key)
	if !it.entry.CloseIdle() {
		p.retired = append(p.retired, it.entry)
	}
}

// Len is the number of live (not retired) entries.
func (p *Pool[K, E]) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lru.Len()
}

// Sweep closes idle connections everywhere and drops the entries, live or
// retired, that have none left.
func (p *Pool[K, E]) Sweep() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for el := p.lru.Front(); el != nil; {
		next := el.Next()
		it := el.Value.(*item[K, E])
		if it.entry.CloseIdle() {
			p.lru.Remove(el)
			delete(p.byKey, it.key)
		}
		el = next
	}
	kept := p.retired[:0]
	for _, e := range p.retired {
		if !e.CloseIdle() {
			kept = append(kept, e)
		}
	}
	clear(p.retired[len(kept):])
	p.retired = kept
}

// Close closes every entry, in flight or not.
func (p *Pool[K, E]) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for el := p.lru.Front(); el != nil; el = el.Next() {
		el.Value.(*item[K, E]).entry.Close()
	}
	for _, e := range p.retired {
		e.Close()
	}
	p.lru.Init()
	clear(p.byKey)
	p.retired = nil
}

// Run sweeps every SweepEvery until ctx ends, then closes the pool.
func (p *Pool[K, E]) Run(ctx context.Context) {
	t := time.NewTicker(SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.Close()
			return
		case <-t.C:
			p.Sweep()
		}
	}
}

// CloseIdle sweeps the pool and reports whether it holds nothing any more,
// so that a Pool can be an Entry of another.
func (p *Pool[K, E]) CloseIdle() bool {
	p.Sweep()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lru.Len() == 0 && len(p.retired) == 0
}
