package balance

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestBalancerAvoidsEndpointThatFailsFast(t *testing.T) {
	addrs := testAddrs(3)
	bad := addrs[0]
	// Accrual off: the failure penalty alone must steer traffic away.
	b, clock := newTestBalancer(t, Options{}, addrs...)
	answer := func(a netip.AddrPort) outcome {
		if a == bad {
			return outcome{failed: true} // instantly
		}
		return outcome{latency: 10 * time.Millisecond}
	}
	const picks = 3000
	badPicks := 0
	for range picks {
		if serve(t, b, clock, answer) == bad {
			badPicks++
		}
	}
	if badPicks > picks/100 {
		t.Errorf("the fast-failing endpoint got %d of %d picks, want at most 1%%", badPicks, picks)
	}
	if s := statusOf(t, b, bad); s.Ejected {
		t.Errorf("ejected with the breaker off: %+v", s)
	}
}

func TestBreakerEjectsProbesAndRestores(t *testing.T) {
	addrs := testAddrs(3)
	bad, others := addrs[0], addrs[1:]
	opts := Options{Breaker: BreakerPolicy{Consecutive: 3, MinPenalty: time.Second, MaxPenalty: 4 * time.Second}}
	b, clock := newTestBalancer(t, opts, addrs...)
	fail := func(netip.AddrPort) outcome { return outcome{latency: time.Millisecond, failed: true} }
	succeed := constant(time.Millisecond)

	// Requests steered to bad with avoid; it fails them all.
	for i := 1; i <= 3; i++ {
		if a := serve(t, b, clock, fail, others...); a != bad {
			t.Fatalf("picked %v, want %v", a, bad)
		}
		if s := statusOf(t, b, bad); s.Ejected != (i == 3) || s.ConsecutiveFailures != int64(i) {
			t.Fatalf("after %d failures: %+v", i, s)
		}
	}

	// Ejected: not picked even when the others are avoided; after the
	// back-off exactly one probe goes through; its failure doubles the
	// back-off, up to MaxPenalty.
	for _, backoff := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		clock.Advance(backoff - 10*time.Millisecond)
		assertNotPicked(t, b, bad, others)
		clock.Advance(10 * time.Millisecond)
		probe := mustPick(t, b, others...)
		if probe.Endpoint().Addr != bad {
			t.Fatalf("back-off of %v over: picked %v, want the probe to %v", backoff, probe.Endpoint().Addr, bad)
		}
		if s := statusOf(t, b, bad); !s.Probing {
			t.Fatalf("probe in flight but status %+v", s)
		}
		assertNotPicked(t, b, bad, others) // one probe at a time
		probe.Done(true)
	}

	// A successful probe closes the breaker.
	clock.Advance(4 * time.Second)
	if a := serve(t, b, clock, succeed, others...); a != bad {
		t.Fatalf("picked %v, want the probe to %v", a, bad)
	}
	if s := statusOf(t, b, bad); s.Ejected || s.Probing || s.ConsecutiveFailures != 0 {
		t.Fatalf("after a successful probe: %+v, want closed", s)
	}
	h1, h2 := mustPick(t, b, others...), mustPick(t, b, others...)
	if h1.Endpoint().Addr != bad || h2.Endpoint().Addr != bad {
		t.Fatalf("restored endpoint not picked for concurrent requests: %v, %v", h1.Endpoint().Addr, h2.Endpoint().Addr)
	}
	h1.Done(false)
	h2.Done(false)

	// The next ejection starts over at MinPenalty.
	for range 3 {
		serve(t, b, clock, fail, others...)
	}
	clock.Advance(time.Second)
	if a := serve(t, b, clock, succeed, others...); a != bad {
		t.Fatalf("picked %v, want a probe to %v after MinPenalty", a, bad)
	}
}

// assertNotPicked picks with the others avoided and checks that avoid gave
// way to the breaker.
func assertNotPicked(t *testing.T, b *Balancer, bad netip.AddrPort, others []netip.AddrPort) {
	t.Helper()
	for range 20 {
		h := mustPick(t, b, others...)
		h.Done(false)
		if h.Endpoint().Addr == bad {
			t.Fatalf("picked %v while it was ejected: %+v", bad, statusOf(t, b, bad))
		}
	}
}

func TestPickAnswersAllEjectedWhenEveryEndpointIsEjected(t *testing.T) {
	addrs := testAddrs(2)
	b, clock := newTestBalancer(t, Options{Breaker: BreakerPolicy{Consecutive: 1, MaxEjectedPercent: 100}}, addrs...)
	fail := func(netip.AddrPort) outcome { return outcome{failed: true} }
	serve(t, b, clock, fail, addrs[1])
	serve(t, b, clock, fail, addrs[0])
	for _, a := range addrs {
		if !statusOf(t, b, a).Ejected {
			t.Fatalf("%v not ejected", a)
		}
	}
	if _, err := b.Pick(context.Background()); !errors.Is(err, ErrAllEjected) {
		t.Fatalf("Pick with every endpoint ejected: %v, want ErrAllEjected", err)
	}
	if _, err := b.Pick(context.Background(), addrs[0]); !errors.Is(err, ErrAllEjected) {
		t.Fatalf("Pick avoiding one, every endpoint ejected: %v, want ErrAllEjected", err)
	}
}
