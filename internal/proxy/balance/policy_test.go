package balance

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/routes"
)

func TestFailureClass(t *testing.T) {
	fivexx := routes.StatusRange{Min: 500, Max: 599}
	tooMany := routes.StatusRange{Min: 429, Max: 429}
	for _, tt := range []struct {
		name   string
		class  FailureClass
		status int
		grpc   string
		want   bool
	}{
		{"default 500", FailureClass{}, 500, "", true},
		{"default 503", FailureClass{}, 503, "", true},
		{"default 429 is the caller's", FailureClass{}, 429, "", false},
		{"default 404", FailureClass{}, 404, "", false},
		{"default no answer", FailureClass{}, 0, "", true},
		{"default grpc UNAVAILABLE", FailureClass{}, 200, "14", true},
		{"default grpc RESOURCE_EXHAUSTED", FailureClass{}, 200, "8", false},
		{"default grpc OK", FailureClass{}, 200, "0", false},
		{"5xx,429: 429", FailureClass{HTTP: []routes.StatusRange{fivexx, tooMany}}, 429, "", true},
		{"5xx,429: 502", FailureClass{HTTP: []routes.StatusRange{fivexx, tooMany}}, 502, "", true},
		{"5xx,429: 404", FailureClass{HTTP: []routes.StatusRange{fivexx, tooMany}}, 404, "", false},
		{"5xx,429: grpc UNAVAILABLE is not listed", FailureClass{HTTP: []routes.StatusRange{fivexx, tooMany}}, 200, "14", false},
		{"grpc 8: RESOURCE_EXHAUSTED", FailureClass{GRPC: []int{8}}, 200, "8", true},
		{"grpc 8: UNAVAILABLE", FailureClass{GRPC: []int{8}}, 200, "14", false},
		{"grpc 8: HTTP 500 is not listed", FailureClass{GRPC: []int{8}}, 500, "", false},
		{"grpc 8: no answer always fails", FailureClass{GRPC: []int{8}}, 0, "", true},
		{"grpc 2: an unknown code reads as UNKNOWN", FailureClass{GRPC: []int{2}}, 200, "99", true},
		{"grpc 14 in trailers of a 200", FailureClass{HTTP: []routes.StatusRange{fivexx}, GRPC: []int{14}}, 200, "14", true},
	} {
		if got := tt.class.Failed(tt.status, tt.grpc); got != tt.want {
			t.Errorf("%s: Failed(%d, %q) = %v, want %v", tt.name, tt.status, tt.grpc, got, tt.want)
		}
	}
}

func TestBreakerFromRouteFillsDefaults(t *testing.T) {
	if got, want := BreakerFromRoute(nil), DefaultBreaker(); got.Consecutive != want.Consecutive ||
		got.MinPenalty != time.Second || got.MaxPenalty != time.Minute || got.Jitter != 0.1 ||
		got.MaxEjectedPercent != 50 || got.Window != 30*time.Second || got.MinRequests != 20 || got.SuccessRate != 0 {
		t.Errorf("BreakerFromRoute(nil) = %+v, want the defaults %+v", got, want)
	}
	got := BreakerFromRoute(&routes.Breaker{Consecutive: 0, SuccessRate: 0.8, MaxPenalty: 5 * time.Second})
	if got.Consecutive != 0 || got.SuccessRate != 0.8 || got.MinPenalty != time.Second || got.MaxPenalty != 5*time.Second || got.Jitter != DefaultJitter {
		t.Errorf("BreakerFromRoute = %+v: want consecutive off, success rate 0.8, 1s-5s, default jitter", got)
	}
}

func TestSuccessRateEjectsWithinItsWindow(t *testing.T) {
	addrs := testAddrs(3)
	bad, others := addrs[0], addrs[1:]
	policy := BreakerPolicy{SuccessRate: 0.8, Window: 10 * time.Second, MinRequests: 10}
	b, clock := newTestBalancer(t, Options{Breaker: policy}, addrs...)
	// Every third request fails: never many in a row, a success rate of 2/3.
	n := 0
	flaky := func(netip.AddrPort) outcome {
		n++
		return outcome{latency: time.Millisecond, failed: n%3 == 0}
	}
	for range 9 {
		serve(t, b, clock, flaky, others...)
	}
	if s := statusOf(t, b, bad); s.Ejected {
		t.Fatalf("ejected after 9 requests, below MinRequests 10: %+v", s)
	}
	for !statusOf(t, b, bad).Ejected {
		if n > 12 {
			t.Fatalf("not ejected after %d requests at a success rate of 2/3", n)
		}
		serve(t, b, clock, flaky, others...)
	}

	// Outcomes older than the window are forgotten: 20 failures 5.5 s
	// apart never make 10 requests in one window.
	b, clock = newTestBalancer(t, Options{Breaker: policy}, addrs...)
	for range 20 {
		serve(t, b, clock, func(netip.AddrPort) outcome { return outcome{failed: true} }, others...)
		clock.Advance(5500 * time.Millisecond)
	}
	if s := statusOf(t, b, bad); s.Ejected {
		t.Fatalf("ejected by failures spread wider than the window: %+v", s)
	}
}

func TestJitterLengthensEjectionsWithinItsShare(t *testing.T) {
	addrs := testAddrs(3)
	bad, others := addrs[0], addrs[1:]
	const jitter = 0.5
	var shortest, longest time.Duration = time.Hour, 0
	for seed := range uint64(50) {
		b, clock := newTestBalancer(t, Options{Breaker: BreakerPolicy{Consecutive: 1, MinPenalty: time.Second, Jitter: jitter}}, addrs...)
		b.opts.Rand = rand.New(rand.NewPCG(seed, 7)).Uint64
		serve(t, b, clock, func(netip.AddrPort) outcome { return outcome{failed: true} }, others...)
		until := b.picker.Load().service.health[0].breaker.openUntil.Load()
		ejection := time.Duration(until - b.now())
		shortest, longest = min(shortest, ejection), max(longest, ejection)
		// After the longest the jitter allows, the probe goes through.
		clock.Advance(time.Duration((1 + jitter) * float64(time.Second)))
		if a := serve(t, b, clock, constant(time.Millisecond), others...); a != bad {
			t.Fatalf("seed %d: no probe after 1.5 s, picked %v", seed, a)
		}
	}
	if shortest < time.Second || longest > 1500*time.Millisecond {
		t.Errorf("ejections lasted %v to %v, want within 1 s-1.5 s", shortest, longest)
	}
	if longest-shortest < 200*time.Millisecond {
		t.Errorf("ejections lasted %v to %v over 50 seeds: the jitter does not spread them", shortest, longest)
	}
}

func TestMaxEjectedPercentCapsEjections(t *testing.T) {
	addrs := testAddrs(4)
	var events []BreakerEvent
	opts := Options{Breaker: BreakerPolicy{Consecutive: 2, MaxEjectedPercent: 50}, OnBreaker: func(ev BreakerEvent) { events = append(events, ev) }}
	b, clock := newTestBalancer(t, opts, addrs...)
	fail := func(netip.AddrPort) outcome { return outcome{failed: true} }
	// Three of four fail; 50% of 4 is 2.
	for _, bad := range addrs[:3] {
		var rest []netip.AddrPort
		for _, a := range addrs {
			if a != bad {
				rest = append(rest, a)
			}
		}
		serve(t, b, clock, fail, rest...)
		serve(t, b, clock, fail, rest...)
	}
	ejected := 0
	for _, s := range b.Snapshot() {
		if s.Ejected {
			ejected++
		}
	}
	if ejected != 2 {
		t.Fatalf("%d of 4 ejected, want the cap of 2: %+v", ejected, b.Snapshot())
	}
	if s := statusOf(t, b, addrs[2]); s.Ejected || s.ConsecutiveFailures != 2 {
		t.Fatalf("the third failing endpoint: %+v, want closed with its failures counted", s)
	}
	want := []BreakerEvent{
		{Endpoint: addrs[0], Kind: Ejected, Reason: ReasonConsecutive},
		{Endpoint: addrs[1], Kind: Ejected, Reason: ReasonConsecutive},
		{Endpoint: addrs[2], Kind: EjectionCapped, Reason: ReasonConsecutive},
	}
	if len(events) != len(want) {
		t.Fatalf("events %+v, want %+v", events, want)
	}
	for i := range want {
		if events[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, events[i], want[i])
		}
	}
	// Once one is restored, the held-back one is ejected by its next failure.
	clock.Advance(2 * time.Second)
	serve(t, b, clock, constant(time.Millisecond), addrs[1:]...) // addrs[0]'s probe succeeds
	if statusOf(t, b, addrs[0]).Ejected {
		t.Fatalf("not restored by a successful probe")
	}
	if got := events[len(events)-1]; got != (BreakerEvent{Endpoint: addrs[0], Kind: Restored}) {
		t.Errorf("last event %+v, want the restoration of %v", got, addrs[0])
	}
	serve(t, b, clock, fail, addrs[0], addrs[1], addrs[3])
	if !statusOf(t, b, addrs[2]).Ejected {
		t.Errorf("the held-back endpoint was not ejected once the cap allowed it: %+v", statusOf(t, b, addrs[2]))
	}
}
