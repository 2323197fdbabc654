package balance

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestBalancerSharesEquallyAmongEqualEndpoints(t *testing.T) {
	// Latencies below, at and above DefaultRTT: the prior must not decide
	// the shares.
	for _, latency := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond, 200 * time.Millisecond} {
		t.Run(latency.String(), func(t *testing.T) {
			addrs := testAddrs(3)
			b, clock := newTestBalancer(t, Options{}, addrs...)
			const picks = 3000
			count := map[netip.AddrPort]int{}
			for range picks {
				count[serve(t, b, clock, constant(latency))]++
			}
			for _, a := range addrs {
				if share := float64(count[a]) / picks; share < 0.25 || share > 0.42 {
					t.Errorf("%v got %.1f%% of the picks, want 25%%..42%% (counts %v)", a, 100*share, count)
				}
			}
		})
	}
}

func TestBalancerAvoidsSlowEndpoint(t *testing.T) {
	for _, base := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond} {
		t.Run(base.String(), func(t *testing.T) {
			addrs := testAddrs(3)
			slow := addrs[2]
			b, clock := newTestBalancer(t, Options{}, addrs...)
			answer := func(a netip.AddrPort) outcome {
				if a == slow {
					return outcome{latency: base + 50*time.Millisecond}
				}
				return outcome{latency: base}
			}
			const picks = 3000
			slowPicks := 0
			for range picks {
				if serve(t, b, clock, answer) == slow {
					slowPicks++
				}
			}
			if slowPicks >= picks/10 {
				t.Errorf("the slow endpoint got %d of %d picks, want under 10%%", slowPicks, picks)
			}
		})
	}
}

func TestBalancerAvoidsEndpointWithManyInFlight(t *testing.T) {
	addrs := testAddrs(3)
	busy := addrs[0]
	b, clock := newTestBalancer(t, Options{}, addrs...)
	for range 300 {
		serve(t, b, clock, constant(10*time.Millisecond))
	}
	// Ten requests outstanding on busy (steered there with avoid).
	var outstanding []*Handle
	for range 10 {
		h := mustPick(t, b, addrs[1], addrs[2])
		if h.Endpoint().Addr != busy {
			t.Fatalf("avoiding the others picked %v, want %v", h.Endpoint().Addr, busy)
		}
		outstanding = append(outstanding, h)
	}
	for range 300 {
		if a := serve(t, b, clock, constant(10*time.Millisecond)); a == busy {
			t.Fatalf("picked %v while it had %d requests in flight and the others none", a, len(outstanding))
		}
	}
	for _, h := range outstanding {
		h.Done(false)
	}
	if got := statusOf(t, b, busy).InFlight; got != 0 {
		t.Errorf("in-flight after every Done = %d, want 0", got)
	}
}

func TestBalancerFavoursHeavierEndpointUnderLoad(t *testing.T) {
	addrs := testAddrs(3)
	eps := endpoints(addrs...)
	eps[0].Weight = 3
	b, clock := newTestBalancer(t, Options{})
	b.Update(eps)
	// Keep 12 requests in flight, each taking 12ms.
	var queue []*Handle
	count := map[netip.AddrPort]int{}
	for range 3000 {
		if len(queue) == 12 {
			queue[0].Done(false)
			queue = queue[1:]
		}
		h := mustPick(t, b)
		count[h.Endpoint().Addr]++
		queue = append(queue, h)
		clock.Advance(time.Millisecond)
	}
	if count[addrs[0]] <= count[addrs[1]] || count[addrs[0]] <= count[addrs[2]] {
		t.Errorf("weight 3 endpoint got %d picks, the weight 1 ones %d and %d; want more", count[addrs[0]], count[addrs[1]], count[addrs[2]])
	}
}

func TestUpdateKeepsStateOfKeptEndpoints(t *testing.T) {
	addrs := testAddrs(3)
	kept, added := addrs[0], addrs[2]
	b, clock := newTestBalancer(t, Options{Breaker: BreakerPolicy{Consecutive: 5}}, addrs[:2]...)
	// Give kept a history: a slow answer, two failures and a request in flight.
	slowly := func(netip.AddrPort) outcome { return outcome{latency: 400 * time.Millisecond} }
	serve(t, b, clock, slowly, addrs[1])
	for range 2 {
		serve(t, b, clock, func(netip.AddrPort) outcome { return outcome{failed: true} }, addrs[1])
	}
	h := mustPick(t, b, addrs[1])
	before := statusOf(t, b, kept)

	b.Update(endpoints(addrs...))

	after := statusOf(t, b, kept)
	if after != before {
		t.Errorf("status of kept endpoint changed by an unrelated Update:\nbefore %+v\nafter  %+v", before, after)
	}
	if after.InFlight != 1 || after.ConsecutiveFailures != 2 || after.RTT < time.Second/2 {
		t.Errorf("kept endpoint lost its history: %+v", after)
	}
	h.Done(false)
	if got := statusOf(t, b, added); got.InFlight != 0 || got.RTT != DefaultRTT {
		t.Errorf("new endpoint = %+v, want a fresh one with the DefaultRTT prior", got)
	}
}

func TestUpdateDrainsRemovedEndpoint(t *testing.T) {
	addrs := testAddrs(3)
	removed := addrs[1]
	b, clock := newTestBalancer(t, Options{}, addrs...)
	h := mustPick(t, b, addrs[0], addrs[2])
	if h.Endpoint().Addr != removed {
		t.Fatalf("picked %v, want %v", h.Endpoint().Addr, removed)
	}

	b.Update(endpoints(addrs[0], addrs[2]))

	for range 1000 {
		if a := serve(t, b, clock, constant(time.Millisecond)); a == removed {
			t.Fatalf("picked removed endpoint %v", a)
		}
	}
	// Even when asked to avoid every remaining endpoint.
	if a := serve(t, b, clock, constant(time.Millisecond), addrs[0], addrs[2]); a == removed {
		t.Fatalf("picked removed endpoint %v", a)
	}
	if h.Endpoint().Addr != removed {
		t.Errorf("the outstanding Handle's endpoint changed to %v", h.Endpoint().Addr)
	}
	h.Responded()
	h.Done(false)
	for _, s := range b.Snapshot() {
		if s.Addr == removed {
			t.Errorf("removed endpoint still in the snapshot: %+v", s)
		}
	}
}

func TestUpdateNewEndpointGetsTrafficWithoutFlood(t *testing.T) {
	addrs := testAddrs(4)
	added := addrs[3]
	b, clock := newTestBalancer(t, Options{}, addrs[:3]...)
	for range 300 {
		serve(t, b, clock, constant(2*time.Millisecond))
	}

	b.Update(endpoints(addrs...))

	var first *Handle
	for i := 0; first == nil; i++ {
		if i == 10 {
			t.Fatalf("new endpoint not picked within %d picks", i)
		}
		h := mustPick(t, b)
		if h.Endpoint().Addr == added {
			first = h // left in flight
			continue
		}
		clock.Advance(2 * time.Millisecond)
		h.Done(false)
	}
	// While its first request is unanswered, it is judged by the 30ms
	// prior: not flooded in favour of the 2ms peers.
	for range 50 {
		if a := serve(t, b, clock, constant(2*time.Millisecond)); a == added {
			t.Fatalf("new endpoint picked again before its first answer")
		}
	}
	first.Done(false)
}

func TestPickWaitsForFirstUpdate(t *testing.T) {
	b, _ := newTestBalancer(t, Options{})
	addr := testAddrs(1)[0]
	type result struct {
		h   *Handle
		err error
	}
	done := make(chan result, 1)
	go func() {
		h, err := b.Pick(context.Background())
		done <- result{h, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("Pick returned before any Update: %v, %v", r.h, r.err)
	default:
	}
	b.Update(endpoints(addr))
	r := <-done
	if r.err != nil || r.h.Endpoint().Addr != addr {
		t.Fatalf("Pick after Update = %v, %v; want %v", r.h, r.err, addr)
	}
	r.h.Done(false)
}

func TestPickReturnsContextErrorWhenCancelledBeforeUpdate(t *testing.T) {
	b, _ := newTestBalancer(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.Pick(ctx)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Pick error = %v, want context.Canceled", err)
	}
}

func TestPickReturnsErrNoEndpointsForEmptySet(t *testing.T) {
	b, _ := newTestBalancer(t, Options{}, testAddrs(2)...)
	b.Update(nil)
	if _, err := b.Pick(context.Background()); !errors.Is(err, ErrNoEndpoints) {
		t.Fatalf("Pick error = %v, want ErrNoEndpoints", err)
	}
}

func TestPickAvoid(t *testing.T) {
	addrs := testAddrs(3)
	tests := []struct {
		name  string
		avoid []netip.AddrPort
		want  []netip.AddrPort // acceptable picks
	}{
		{"one avoided", addrs[:1], addrs[1:]},
		{"all but one avoided", addrs[:2], addrs[2:]},
		{"all avoided picks anyway", addrs, addrs},
		{"unknown address ignored", []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:1")}, addrs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, clock := newTestBalancer(t, Options{}, addrs...)
			for range 100 {
				got := serve(t, b, clock, constant(time.Millisecond), tt.avoid...)
				if !slices.Contains(tt.want, got) {
					t.Fatalf("picked %v avoiding %v, want one of %v", got, tt.avoid, tt.want)
				}
			}
		})
	}
}

func TestLoneEndpointIsEjectedOnlyWhenTheCapAllowsAll(t *testing.T) {
	addr := testAddrs(1)[0]
	fail := func(netip.AddrPort) outcome { return outcome{failed: true} }
	// Under the default cap (50% of one endpoint, rounded down: none) a
	// lone endpoint stays in, however it fails.
	b, clock := newTestBalancer(t, Options{Breaker: BreakerPolicy{Consecutive: 1}}, addr)
	for range 3 {
		serve(t, b, clock, fail)
	}
	if s := statusOf(t, b, addr); s.Ejected {
		t.Fatalf("a lone endpoint was ejected under a 50%% cap: %+v", s)
	}

	// Allowed 100%, it is ejected: Pick says so until the penalty ends,
	// then lets exactly one probe through.
	b, clock = newTestBalancer(t, Options{Breaker: BreakerPolicy{Consecutive: 1, MaxEjectedPercent: 100}}, addr)
	serve(t, b, clock, fail)
	if !statusOf(t, b, addr).Ejected {
		t.Fatalf("endpoint not ejected after a failure with Consecutive 1")
	}
	if _, err := b.Pick(context.Background()); !errors.Is(err, ErrAllEjected) {
		t.Fatalf("Pick while the only endpoint is ejected: %v, want ErrAllEjected", err)
	}
	clock.Advance(DefaultMinPenalty)
	probe := mustPick(t, b)
	if _, err := b.Pick(context.Background()); !errors.Is(err, ErrAllEjected) {
		t.Fatalf("second Pick while the probe is in flight: %v, want ErrAllEjected", err)
	}
	probe.Done(false)
	h := mustPick(t, b)
	h.Done(false)
}

func TestHandleRespondedRecordsHeaderLatency(t *testing.T) {
	addr := testAddrs(1)[0]
	b, clock := newTestBalancer(t, Options{}, addr)
	h := mustPick(t, b)
	clock.Advance(50 * time.Millisecond)
	h.Responded()
	clock.Advance(time.Minute) // a long stream
	h.Responded()              // no second sample
	h.Done(false)
	if got := statusOf(t, b, addr).RTT; got != 50*time.Millisecond {
		t.Errorf("RTT = %v, want 50ms (the header latency)", got)
	}
}

func TestHandleDoneTwiceIsNoOp(t *testing.T) {
	addr := testAddrs(1)[0]
	b, _ := newTestBalancer(t, Options{Breaker: BreakerPolicy{Consecutive: 2}}, addr)
	h := mustPick(t, b)
	h.Done(true)
	h.Done(true)
	s := statusOf(t, b, addr)
	if s.InFlight != 0 || s.ConsecutiveFailures != 1 || s.Ejected {
		t.Errorf("after a double Done: %+v, want in-flight 0, one failure, not ejected", s)
	}
}

func TestBalancerReturnsToRecoveredEndpoint(t *testing.T) {
	addrs := testAddrs(3)
	flaky := addrs[2]
	b, clock := newTestBalancer(t, Options{}, addrs...)
	recovered := false
	answer := func(a netip.AddrPort) outcome {
		if a == flaky && !recovered {
			return outcome{latency: 300 * time.Millisecond}
		}
		return outcome{latency: 10 * time.Millisecond}
	}
	slowPicks := 0
	for range 300 {
		if serve(t, b, clock, answer) == flaky {
			slowPicks++
		}
	}
	if slowPicks > 30 {
		t.Fatalf("the slow endpoint got %d of 300 picks while slow, want it avoided", slowPicks)
	}
	// It recovers, but gets no samples to show it while it is avoided:
	// only the fading of its estimate brings it back (within a few decay
	// windows of simulated time, 10ms per request).
	recovered = true
	for range 10000 {
		serve(t, b, clock, answer)
	}
	count := 0
	const picks = 3000
	for range picks {
		if serve(t, b, clock, answer) == flaky {
			count++
		}
	}
	if share := float64(count) / picks; share < 0.25 {
		t.Errorf("recovered endpoint got %.1f%% of the picks, want at least 25%%", 100*share)
	}
}

func TestConnectTimeIsNotCountedAsLatency(t *testing.T) {
	addrs := testAddrs(1)
	b, clock := newTestBalancer(t, Options{}, addrs...)
	// The first request waits 200 ms for a new connection, then the
	// endpoint answers in 1 ms.
	h := mustPick(t, b)
	clock.Advance(200 * time.Millisecond)
	h.Sending()
	clock.Advance(time.Millisecond)
	h.Responded()
	h.Done(false)
	if rtt := statusOf(t, b, addrs[0]).RTT; rtt > 5*time.Millisecond {
		t.Errorf("RTT estimate %v after a 1 ms answer on a connection that took 200 ms to open, want about 1 ms", rtt)
	}
}
