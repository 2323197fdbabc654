package model

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentWritesAndWatches runs writers and short-lived watches at
// once (meant for -race), then checks that long-lived watches converge on
// the final state.
func TestConcurrentWritesAndWatches(t *testing.T) {
	m := New()
	m.Writer("test").SetService(webService)
	const dst = "web.demo.svc.cluster.local:80"

	var last [4]atomic.Pointer[EndpointSet]
	for i := range last {
		err := m.Watch(t.Context(), dst, func(s EndpointSet) { last[i].Store(&s) })
		if err != nil {
			t.Fatal(err)
		}
	}

	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			writer := m.Writer(fmt.Sprintf("writer-%d", w))
			for i := range 200 {
				name := fmt.Sprintf("web-%d-%d", w, i%10)
				writer.SetInstance(webInstance(name, fmt.Sprintf("10.0.%d.%d", w, i%10+1), i%3 != 0, true))
				if i%7 == 0 {
					writer.DeleteInstance("demo", name)
				}
			}
			writer.Replace(Snapshot{})
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 50 {
				ctx, cancel := context.WithCancel(t.Context())
				got := make(chan struct{}, 1)
				if err := m.Watch(ctx, dst, func(EndpointSet) {
					select {
					case got <- struct{}{}:
					default:
					}
				}); err != nil {
					t.Error(err)
				}
				<-got
				cancel()
			}
		})
	}
	wg.Wait()

	m.Writer("final").SetInstance(webInstance("web-final", "10.0.9.9", true, true))
	for i := range last {
		waitFor(t, func() bool {
			s := last[i].Load()
			return s != nil && len(s.Endpoints) == 1 && s.Endpoints[0].Addr == netip.MustParseAddrPort("10.0.9.9:8080")
		})
	}
}

// BenchmarkFanOut measures one endpoint change in a 5,000-endpoint service
// reaching 1,000 watchers of it.
func BenchmarkFanOut(b *testing.B) {
	const endpoints, watchers = 5000, 1000
	m := New()
	w := m.Writer("bench")
	w.SetService(webService)
	for i := range endpoints {
		w.SetInstance(webInstance(fmt.Sprintf("web-%d", i), netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String(), true, true))
	}
	var delivered, target atomic.Int64
	reached := make(chan struct{}, 1)
	target.Store(watchers)
	for range watchers {
		err := m.Watch(b.Context(), "web.demo.svc.cluster.local:80", func(EndpointSet) {
			if delivered.Add(1) == target.Load() {
				reached <- struct{}{}
			}
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	<-reached // everyone has the initial set

	ready := false
	b.ResetTimer()
	for b.Loop() {
		target.Add(watchers)
		w.SetInstance(webInstance("web-0", "10.1.0.0", ready, true))
		ready = !ready
		<-reached
	}
}
