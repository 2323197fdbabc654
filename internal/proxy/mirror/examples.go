package mirror

import (
	"sync"
	"time"
)

// Bounds of the examples a proxy keeps.
const (
	// ExamplesPerRoute is how many recent mismatches are kept per route.
	ExamplesPerRoute = 10
	// maxExampleRoutes bounds the routes examples are kept for; route
	// names come from the controller, but a proxy bounds its memory
	// anyway: examples of a route past it are not kept.
	maxExampleRoutes = 256
	// exampleInterval: at most one example is kept per route per interval.
	exampleInterval = time.Second
	// maxUnsent bounds the examples waiting to be reported; past it the
	// oldest are dropped.
	maxUnsent = 100
)

// Examples keeps a few recent mismatches per route, for `skein diff`: at
// most ExamplesPerRoute, at most one per route per second. The newest
// also wait in a bounded queue for the controller (Unsent).
type Examples struct {
	mu     sync.Mutex
	routes map[string]*routeExamples
	unsent []Example
}

type routeExamples struct {
	last time.Time
	ring []Example // oldest first
}

// NewExamples returns an empty store.
func NewExamples() *Examples { return &Examples{routes: make(map[string]*routeExamples)} }

func (e *Examples) add(ex Example) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.routes[ex.Route]
	if r == nil {
		if len(e.routes) >= maxExampleRoutes {
			return
		}
		r = &routeExamples{}
		e.routes[ex.Route] = r
	}
	if !r.last.IsZero() && ex.Time.Sub(r.last) < exampleInterval {
		return
	}
	r.last = ex.Time
	if len(r.ring) == ExamplesPerRoute {
		r.ring = append(r.ring[:0], r.ring[1:]...)
	}
	r.ring = append(r.ring, ex)
	if len(e.unsent) == maxUnsent {
		e.unsent = append(e.unsent[:0], e.unsent[1:]...)
	}
	e.unsent = append(e.unsent, ex)
}

// Recent returns the examples kept for route, oldest first.
func (e *Examples) Recent(route string) []Example {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.routes[route]; r != nil {
		return append([]Example(nil), r.ring...)
	}
	return nil
}

// Unsent takes the examples not yet handed out, oldest first.
func (e *Examples) Unsent() []Example {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.unsent
	e.unsent = nil
	return out
}

// Requeue puts back examples that could not be reported, before any
// newer ones, within the queue's bound.
func (e *Examples) Requeue(exs []Example) {
	e.mu.Lock()
	defer e.mu.Unlock()
	all := append(exs, e.unsent...)
	if len(all) > maxUnsent {
		all = all[len(all)-maxUnsent:]
	}
	e.unsent = all
}
