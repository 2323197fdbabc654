package balance

import (
	"net/netip"
	"testing"
	"time"
)

// serveRoute is serve for a request of a route scope.
func serveRoute(t *testing.T, b *Balancer, clock *fakeClock, route string, answer func(netip.AddrPort) outcome, avoid ...netip.AddrPort) netip.AddrPort {
	t.Helper()
	h, err := b.PickRoute(t.Context(), route, avoid...)
	if err != nil {
		t.Fatalf("PickRoute(%q): %v", route, err)
	}
	addr := h.Endpoint().Addr
	o := answer(addr)
	clock.Advance(o.latency)
	h.Done(o.failed)
	return addr
}

func routeStatusOf(t *testing.T, b *Balancer, route string, addr netip.AddrPort) EndpointStatus {
	t.Helper()
	for _, s := range b.SnapshotRoute(route) {
		if s.Addr == addr {
			return s
		}
	}
	t.Fatalf("%v is not in route %q's snapshot", addr, route)
	return EndpointStatus{}
}

// TestRouteBreakerIsolatesItsFailures: route A fails on one replica of
// three. A's own breaker ejects it for A; the Service-wide scope (route B's
// traffic) neither ejects it nor counts A's failures, and B keeps sending
// it its share.
func TestRouteBreakerIsolatesItsFailures(t *testing.T) {
	addrs := testAddrs(3)
	bad := addrs[0]
	b, clock := newTestBalancer(t, Options{Breaker: BreakerPolicy{Consecutive: 3}}, addrs...)
	b.SetRouteBreakers("web", map[string]BreakerPolicy{"A": {Consecutive: 3}})
	routeA := func(a netip.AddrPort) outcome {
		return outcome{latency: 10 * time.Millisecond, failed: a == bad}
	}
	healthy := constant(10 * time.Millisecond)

	shareOfB := func() float64 {
		n := 0
		for range 300 {
			if serve(t, b, clock, healthy) == bad {
				n++
			}
		}
		return float64(n) / 300
	}
	before := shareOfB()
	aPicks := map[netip.AddrPort]int{}
	for range 1000 {
		aPicks[serveRoute(t, b, clock, "A", routeA)]++
	}
	if s := routeStatusOf(t, b, "A", bad); !s.Ejected {
		t.Fatalf("route A's breaker did not eject %v: %+v", bad, s)
	}
	if aPicks[bad] > 30 {
		t.Errorf("route A sent %d of 1000 requests to the replica failing it, want it avoided", aPicks[bad])
	}
	if s := statusOf(t, b, bad); s.Ejected || s.ConsecutiveFailures != 0 {
		t.Fatalf("route A's failures reached the Service-wide breaker: %+v", s)
	}
	after := shareOfB()
	if after < 0.25 || after < before-0.08 {
		t.Errorf("route B's share of %v went from %.0f%% to %.0f%% while route A failed there, want it kept", bad, 100*before, 100*after)
	}
}

func TestPolicyChangeKeepsEndpointState(t *testing.T) {
	addrs := testAddrs(3)
	bad, others := addrs[0], addrs[1:]
	b, clock := newTestBalancer(t, Options{Breaker: BreakerPolicy{Consecutive: 5}}, addrs...)
	b.SetRouteBreakers("web", map[string]BreakerPolicy{"A": {Consecutive: 5}})
	fail := func(netip.AddrPort) outcome { return outcome{failed: true} }
	for range 3 {
		serve(t, b, clock, fail, others...)
		serveRoute(t, b, clock, "A", fail, others...)
	}
	// Lower both thresholds: the failures already counted still count.
	b.SetBreaker(BreakerPolicy{Consecutive: 4})
	b.SetRouteBreakers("web", map[string]BreakerPolicy{"A": {Consecutive: 4}})
	if s, r := statusOf(t, b, bad), routeStatusOf(t, b, "A", bad); s.ConsecutiveFailures != 3 || r.ConsecutiveFailures != 3 {
		t.Fatalf("a policy change lost the failure counts: service %+v, route %+v", s, r)
	}
	serve(t, b, clock, fail, others...)
	serveRoute(t, b, clock, "A", fail, others...)
	if s, r := statusOf(t, b, bad), routeStatusOf(t, b, "A", bad); !s.Ejected || !r.Ejected {
		t.Fatalf("4 failures under Consecutive 4 did not eject: service %+v, route %+v", s, r)
	}
	// An unrelated Update keeps the route's state; the endpoint's removal
	// drops it.
	b.Update(endpoints(addrs...))
	if r := routeStatusOf(t, b, "A", bad); !r.Ejected {
		t.Fatalf("an Update that kept the endpoint lost its route state: %+v", r)
	}
	b.Update(endpoints(others...))
	b.Update(endpoints(addrs...))
	if r := routeStatusOf(t, b, "A", bad); r.Ejected || r.ConsecutiveFailures != 0 {
		t.Fatalf("route state outlived the endpoint's removal: %+v", r)
	}
	// A route the owner no longer lists is dropped with its state; another
	// owner's routes are not touched.
	serveRoute(t, b, clock, "A", fail, others...)
	b.SetRouteBreakers("api", map[string]BreakerPolicy{"C": {Consecutive: 4}})
	if r := routeStatusOf(t, b, "A", bad); r.ConsecutiveFailures != 1 {
		t.Fatalf("another owner's SetRouteBreakers touched route A: %+v", r)
	}
	b.SetRouteBreakers("web", nil)
	if len(b.picker.Load().routes) != 1 || len(b.routes) != 1 {
		t.Fatalf("route scopes after web dropped its routes: %v", b.routes)
	}
	b.SetRouteBreakers("web", map[string]BreakerPolicy{"A": {Consecutive: 4}})
	if r := routeStatusOf(t, b, "A", bad); r.ConsecutiveFailures != 0 {
		t.Fatalf("a dropped route came back with its old state: %+v", r)
	}
}

// TestFastFailingEndpointGetsLittleEvenWithRetries: breakers off, one of
// three replicas fails every request at once while the others take 20-50
// ms, and each failed attempt is retried (up to twice) by a layer above:
// every attempt is a request to the balancer. Concurrency 6 keeps the
// healthy replicas busy, so their costs are high.
func TestFastFailingEndpointGetsLittleEvenWithRetries(t *testing.T) {
	for _, retries := range []int{0, 2} {
		addrs := testAddrs(3)
		bad := addrs[0]
		b, clock := newTestBalancer(t, Options{}, addrs...)
		type inFlight struct {
			h     *Handle
			until time.Time
			tries int
		}
		var queue []inFlight
		attempts := map[netip.AddrPort]int{}
		send := func(tries int) {
			h := mustPick(t, b)
			addr := h.Endpoint().Addr
			attempts[addr]++
			d := time.Duration(0)
			if addr != bad {
				d = 20*time.Millisecond + time.Duration(attempts[addr]%4)*10*time.Millisecond
			}
			queue = append(queue, inFlight{h, clock.now.Add(d), tries})
		}
		for range 6 {
			send(0)
		}
		for requests := 6; requests < 3000; {
			// End the earliest.
			first := 0
			for i := range queue {
				if queue[i].until.Before(queue[first].until) {
					first = i
				}
			}
			r := queue[first]
			queue = append(queue[:first], queue[first+1:]...)
			if r.until.After(clock.now) {
				clock.now = r.until
			}
			failed := r.h.Endpoint().Addr == bad
			r.h.Done(failed)
			if failed && r.tries < retries {
				send(r.tries + 1)
				continue
			}
			send(0)
			requests++
		}
		total := attempts[addrs[0]] + attempts[addrs[1]] + attempts[addrs[2]]
		share := float64(attempts[bad]) / float64(total)
		t.Logf("retries %d: the failing replica got %d of %d attempts (%.1f%%)", retries, attempts[bad], total, 100*share)
		if share > 0.05 {
			t.Errorf("retries %d: the fast-failing replica got %.1f%% of the attempts, want under 5%%", retries, 100*share)
		}
	}
}
