package balance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// replicaLatency is how long a simulated replica takes to answer: every
// replica draws from the same distribution, as identical replicas on one
// busy machine do.
type replicaLatency struct {
	typical time.Duration
	// jitter is the σ of a log-normal factor on typical.
	jitter float64
	// hiccups is the share of calls that also wait 5-40 ms (the scheduler
	// of a busy 2-core machine; the `skein up` test runs on one).
	hiccups float64
}

func (l replicaLatency) draw(r *rand.Rand) time.Duration {
	d := float64(l.typical) * math.Exp(l.jitter*r.NormFloat64())
	if r.Float64() < l.hiccups {
		d += float64(5*time.Millisecond) + r.Float64()*float64(35*time.Millisecond)
	}
	return time.Duration(d)
}

// simulatedCalls is how many calls a simulated client makes, as the e2e
// and `skein up` tests' clients do.
const simulatedCalls = 3000

// seededBalancer returns a Balancer over three endpoints (testAddrs(3)) on
// a fake clock, and the rand that draws their answers, both from seed.
func seededBalancer(t *testing.T, seed uint64) (*Balancer, *fakeClock, *rand.Rand) {
	b, clock := newTestBalancer(t, Options{}, testAddrs(3)...)
	b.opts.Rand = rand.New(rand.NewPCG(seed, 1)).Uint64
	return b, clock, rand.New(rand.NewPCG(seed, 2))
}

// sharesOf returns each of testAddrs(3)'s share of simulatedCalls.
func sharesOf(count map[netip.AddrPort]int) []float64 {
	addrs := testAddrs(3)
	shares := make([]float64, len(addrs))
	for i, a := range addrs {
		shares[i] = float64(count[a]) / simulatedCalls
	}
	return shares
}

// sequentialShares is the `skein up` client in miniature: one caller on
// one connection starts a call every 10 ms (or as soon as the previous
// one ends, when that is later), 3,000 calls, over three replicas that
// answer alike. The first call to each replica first waits for its
// connection (not counted, Sending says so) and pays the far side's
// set-up as well (counted: the client cannot tell it apart). It returns
// each replica's share of the calls.
func sequentialShares(t *testing.T, seed uint64, lat replicaLatency) []float64 {
	t.Helper()
	b, clock, r := seededBalancer(t, seed)
	count := map[netip.AddrPort]int{}
	for range simulatedCalls {
		start := clock.now
		h := mustPick(t, b)
		addr := h.Endpoint().Addr
		answer := lat.draw(r)
		if count[addr] == 0 {
			clock.Advance(time.Millisecond + time.Duration(r.Int64N(int64(20*time.Millisecond))))
			h.Sending()
			answer += time.Duration(r.Int64N(int64(5 * time.Millisecond)))
		}
		clock.Advance(answer)
		h.Responded()
		h.Done(false)
		count[addr]++
		if next := start.Add(10 * time.Millisecond); clock.now.Before(next) {
			clock.now = next
		}
	}
	return sharesOf(count)
}

// concurrentShares is the e2e test's client in miniature: several callers
// on one connection, each starting its next call as soon as its last one
// ends, 3,000 calls over three replicas that answer alike. It returns each
// replica's share of the calls.
func concurrentShares(t *testing.T, seed uint64, callers int, lat replicaLatency) []float64 {
	t.Helper()
	b, clock, r := seededBalancer(t, seed)
	type call struct {
		h   *Handle
		end time.Time
	}
	var inFlight []call
	started := 0
	start := func() {
		inFlight = append(inFlight, call{mustPick(t, b), clock.now.Add(lat.draw(r))})
		started++
	}
	for range callers {
		start()
	}
	count := map[netip.AddrPort]int{}
	for len(inFlight) > 0 {
		first := 0
		for i, c := range inFlight {
			if c.end.Before(inFlight[first].end) {
				first = i
			}
		}
		c := inFlight[first]
		inFlight = slices.Delete(inFlight, first, first+1)
		clock.now = c.end
		c.h.Done(false)
		count[c.h.Endpoint().Addr]++
		if started < simulatedCalls {
			start()
		}
	}
	return sharesOf(count)
}

// noisyReplicas are the answers of identical replicas around typical: a
// little jitter, rare and frequent hiccups, and much of both.
func noisyReplicas(typical time.Duration) []replicaLatency {
	return []replicaLatency{
		{typical: typical, jitter: 0.3},
		{typical: typical, jitter: 0.3, hiccups: 0.002},
		{typical: typical, jitter: 0.3, hiccups: 0.01},
		{typical: typical, jitter: 0.6, hiccups: 0.05},
	}
}

// checkEvenShares runs shares over 100 seeds for each latency profile and
// wants every replica at 25-42% of the calls in every run.
func checkEvenShares(t *testing.T, lats []replicaLatency, shares func(seed uint64, lat replicaLatency) []float64) {
	const seeds = 100
	for _, lat := range lats {
		name := fmt.Sprintf("%v_jitter%v_hiccups%v", lat.typical, lat.jitter, lat.hiccups)
		t.Run(name, func(t *testing.T) {
			uneven, worst := 0, 0.0
			for seed := uint64(1); seed <= seeds; seed++ {
				shares := shares(seed, lat)
				ok := true
				for _, s := range shares {
					worst = max(worst, math.Abs(s-1.0/3))
					ok = ok && s >= 0.25 && s <= 0.42
				}
				if !ok {
					uneven++
					if uneven <= 3 {
						t.Errorf("seed %d: shares %.1f%%, %.1f%%, %.1f%%; want 25%%..42%% each", seed, 100*shares[0], 100*shares[1], 100*shares[2])
					}
				}
			}
			if uneven > 0 {
				t.Errorf("%d of %d seeds shared unevenly", uneven, seeds)
			}
			t.Logf("largest deviation from a third over %d seeds: %.1f points", seeds, 100*worst)
		})
	}
}

// TestBalancerSharesEquallyAmongNoisyEqualEndpoints: identical replicas
// whose answers vary as real ones do must still share one sequential
// client's calls evenly, 25-42% each, whatever the seed. With nothing in
// flight P2C ranks the endpoints by latency estimate alone (the best of
// three gets 2/3 of the picks, the worst none), so any estimate that stays
// wrong for long, such as one slow answer held as a peak, skews the shares.
func TestBalancerSharesEquallyAmongNoisyEqualEndpoints(t *testing.T) {
	lats := append(noisyReplicas(500*time.Microsecond), replicaLatency{typical: 5 * time.Millisecond, jitter: 0.3, hiccups: 0.01})
	checkEvenShares(t, lats, func(seed uint64, lat replicaLatency) []float64 {
		return sequentialShares(t, seed, lat)
	})
}

// TestBalancerSharesEquallyAmongNoisyEqualEndpointsUnderConcurrentCalls:
// the same with four callers on the connection, as in the e2e test
// (TestGRPCRequestsSpreadOverReplicasOnOneConnection). Endpoints are
// rarely idle then, so nothing fades, and each answers every millisecond
// or so: an estimate that held each peak for its decay window in time
// would be the highest answer of the whole run, and one rare slow answer
// would skew the shares.
func TestBalancerSharesEquallyAmongNoisyEqualEndpointsUnderConcurrentCalls(t *testing.T) {
	checkEvenShares(t, noisyReplicas(1200*time.Microsecond), func(seed uint64, lat replicaLatency) []float64 {
		return concurrentShares(t, seed, 4, lat)
	})
}

// TestOneSlowAnswerCostsAnEndpointFewCalls: one hiccup (30 ms against a
// normal 0.5 ms) on one of three replicas of a sequential client. While it
// looks slow it gets nothing; it must be back within 100 calls (1 s at 100
// calls a second), not after its estimate faded over seconds.
func TestOneSlowAnswerCostsAnEndpointFewCalls(t *testing.T) {
	addrs := testAddrs(3)
	b, clock := newTestBalancer(t, Options{}, addrs...)
	call := func(hiccup netip.AddrPort) netip.AddrPort {
		h := mustPick(t, b)
		latency := 500 * time.Microsecond
		if h.Endpoint().Addr == hiccup {
			latency = 30 * time.Millisecond
		}
		clock.Advance(latency)
		h.Done(false)
		clock.Advance(10*time.Millisecond - latency)
		return h.Endpoint().Addr
	}
	for range 300 {
		call(netip.AddrPort{})
	}
	// The next call to addrs[0] is slow.
	for call(addrs[0]) != addrs[0] {
	}
	for n := 1; ; n++ {
		if call(netip.AddrPort{}) == addrs[0] {
			t.Logf("picked again after %d calls", n)
			break
		}
		if n == 100 {
			t.Fatalf("not picked in the %d calls after one slow answer: %+v", n, b.Snapshot())
		}
	}
}
