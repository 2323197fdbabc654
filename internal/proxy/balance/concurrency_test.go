package balance

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
)

// TestBalancerConcurrentUse runs Pick/Responded/Done (Service-wide and in
// a route scope), Update, SetBreaker, SetRouteBreakers and Snapshot from
// several goroutines (meant for -race) and checks that in-flight
// accounting balances.
func TestBalancerConcurrentUse(t *testing.T) {
	addrs := testAddrs(6)
	b := New(Options{Breaker: BreakerPolicy{Consecutive: 3}})
	b.Update(endpoints(addrs...))
	ctx, cancel := context.WithCancel(context.Background())
	var background sync.WaitGroup
	background.Go(func() {
		sets := [][]int{{0, 1, 2}, {0, 1, 2, 3, 4, 5}, {3, 4}, {5}, {1, 3, 5}}
		for i := 0; ctx.Err() == nil; i++ {
			var eps []discovery.Endpoint
			for _, j := range sets[i%len(sets)] {
				eps = append(eps, discovery.Endpoint{Addr: addrs[j]})
			}
			b.Update(eps)
			b.Snapshot()
			if i%2 == 0 {
				b.SetRouteBreakers("web", map[string]BreakerPolicy{"A": {Consecutive: 2}})
			} else {
				b.SetRouteBreakers("web", nil)
			}
			b.SetBreaker(BreakerPolicy{Consecutive: 2 + i%3})
		}
	})
	var pickers sync.WaitGroup
	for range 4 {
		pickers.Go(func() {
			for range 2000 {
				h, err := b.PickRoute(ctx, []string{"", "A"}[rand.IntN(2)], addrs[rand.IntN(len(addrs))])
				if errors.Is(err, ErrAllEjected) {
					continue // the set shrank to endpoints ejected under a larger one
				}
				if err != nil {
					t.Errorf("Pick: %v", err)
					return
				}
				if rand.IntN(2) == 0 {
					h.Responded()
				}
				h.Done(rand.IntN(4) == 0)
			}
		})
	}
	pickers.Wait()
	cancel()
	background.Wait()

	b.Update(endpoints(addrs...))
	for _, s := range b.Snapshot() {
		if s.InFlight != 0 {
			t.Errorf("%v has %d in flight after every Done", s.Addr, s.InFlight)
		}
	}
}
