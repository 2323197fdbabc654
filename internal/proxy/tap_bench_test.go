package proxy

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/tap"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

// What the tap costs the outbound layers per gRPC call (compare with
// BenchmarkOutboundLayersGRPC, the same stack without the tap layer):
// idle, with no session open; at the cap, with one session whose filter
// matches every call, at the most events a second a session may ask, read
// as fast as it comes; and tapping every call (a clock that moves a second
// per reading, so that the cap never bites): the cost of one followed call.

func BenchmarkOutboundLayersGRPCTapIdle(b *testing.B) {
	send := layeredRequestTapped(b, true, tap.New(tap.Config{}))
	b.ReportAllocs()
	for b.Loop() {
		send()
	}
}

func BenchmarkOutboundLayersGRPCTapAtCap(b *testing.B) {
	taps := tap.New(tap.Config{})
	observeAll(b, taps, tap.MaxEventsPerSecond)
	send := layeredRequestTapped(b, true, taps)
	b.ReportAllocs()
	for b.Loop() {
		send()
	}
}

func BenchmarkOutboundLayersGRPCTapEveryCall(b *testing.B) {
	var clock atomic.Int64
	taps := tap.New(tap.Config{Now: func() time.Time { return time.Unix(clock.Add(int64(time.Second)), 0) }})
	observeAll(b, taps, tap.MaxEventsPerSecond)
	send := layeredRequestTapped(b, true, taps)
	b.ReportAllocs()
	for b.Loop() {
		send()
	}
}

// The whole proxied path (BenchmarkProxiedGRPC: client engine, proxy,
// server engine on loopback) with the tap idle and with one session at
// its cap: what a tapped workload's calls feel.

func BenchmarkProxiedGRPCTapIdle(b *testing.B) {
	send := proxiedRequestTapped(b, 2, tap.New(tap.Config{}))
	send()
	b.ReportAllocs()
	for b.Loop() {
		send()
	}
}

func BenchmarkProxiedGRPCTapAtCap(b *testing.B) {
	taps := tap.New(tap.Config{})
	observeAll(b, taps, tap.MaxEventsPerSecond)
	send := proxiedRequestTapped(b, 2, taps)
	send()
	b.ReportAllocs()
	for b.Loop() {
		send()
	}
}

// observeAll opens a session on taps matching every request and counts
// its events until the benchmark ends.
func observeAll(b *testing.B, taps *tap.Tap, rate uint32) *atomic.Int64 {
	ctx, cancel := context.WithCancel(context.Background())
	var events atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- taps.Observe(ctx, &tappb.ObserveRequest{MaxEventsPerSecond: rate}, func(*tappb.Event) error {
			events.Add(1)
			return nil
		})
	}()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	// The session is open once a request is followed.
	send := layeredRequestTapped(b, false, taps)
	for events.Load() == 0 {
		send()
		time.Sleep(time.Millisecond)
	}
	return &events
}
