// Package modeltest holds a model.Watcher for tests whose endpoint sets the
// test sets by hand. Only tests import it.
package modeltest

import (
	"context"
	"sync"

	"github.com/skeinmesh/skein/internal/model"
)

// Watcher is a model.Watcher whose sets the test changes with Set.
type Watcher struct {
	mu      sync.Mutex
	sets    map[string]model.EndpointSet
	watches map[*watch]struct{}
}

type watch struct {
	dst    string
	update func(model.EndpointSet)
}

// NewWatcher returns a Watcher that knows no destination yet.
func NewWatcher() *Watcher {
	return &Watcher{sets: map[string]model.EndpointSet{}, watches: map[*watch]struct{}{}}
}

// Watch implements model.Watcher.
func (f *Watcher) Watch(ctx context.Context, dst string, update func(model.EndpointSet)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := &watch{dst: dst, update: update}
	f.watches[w] = struct{}{}
	update(f.sets[dst])
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.watches, w)
	})
	return nil
}

// Set changes dst and tells its watchers, one at a time, as the model does.
func (f *Watcher) Set(dst string, set model.EndpointSet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets[dst] = set
	for w := range f.watches {
		if w.dst == dst {
			w.update(set)
		}
	}
}

// ActiveWatches is how many watches have not ended.
func (f *Watcher) ActiveWatches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watches)
}
