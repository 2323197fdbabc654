package balance

import (
	"math/bits"
	"net/netip"
	"slices"
)

// picker is an immutable snapshot of one endpoint set. Update builds a new
// one; Pick only reads it (and the per-endpoint atomics it points to).
type picker struct {
	entries []entry
}

// admitAttempts bounds how often pick retries when the endpoint it chose
// changed breaker state under it (a concurrent Pick took the half-open
// probe). After that it sends the request anyway, as failing open would.
const admitAttempts = 3

// pick chooses an endpoint for one request; probe reports that the request
// is the half-open breaker's probe. entries must not be empty.
func (p *picker) pick(now int64, avoid []netip.AddrPort, rnd func() uint64) (e *entry, probe bool) {
	for attempt := 1; ; attempt++ {
		e, failOpen := p.choose(now, avoid, rnd)
		if failOpen {
			// Every endpoint is ejected: the breaker must not turn a
			// partial outage into a total one.
			return e, false
		}
		probe, ok := e.state.breaker.admit(now)
		if ok || attempt == admitAttempts {
			return e, probe
		}
	}
}

// filter says which entries a choice may use.
type filter struct {
	available  bool // only endpoints whose breaker lets a request through
	notAvoided bool // only endpoints the caller did not ask to avoid
}

// Filters from strictest to loosest: avoid is a preference among available
// endpoints; ejection is set aside only when every endpoint is ejected.
var (
	filtersWithAvoid = []filter{{true, true}, {true, false}, {false, true}, {false, false}}
	filtersNoAvoid   = []filter{{true, false}, {false, false}}
)

// choose is power of two choices: two distinct random entries that pass
// the strictest filter any entry passes, the cheaper of them wins (the
// first drawn on a tie). The loser, if it has nothing in flight, counts
// one more comparison lost, which fades its estimate (rttSample.fadedAt).
// failOpen reports that no endpoint was available.
func (p *picker) choose(now int64, avoid []netip.AddrPort, rnd func() uint64) (e *entry, failOpen bool) {
	filters := filtersNoAvoid
	if len(avoid) > 0 {
		filters = filtersWithAvoid
	}
	for _, f := range filters {
		a, b, ok := p.sample(now, f, avoid, rnd)
		if !ok {
			continue
		}
		if a != b {
			if b.cost() < a.cost() {
				a, b = b, a
			}
			if b.state.inFlight.Load() == 0 {
				b.state.passedOver.Add(1)
			}
		}
		return a, !f.available
	}
	// Not reached: the loosest filter passes every entry.
	return &p.entries[0], true
}

// sample returns two distinct random entries passing f (the same entry
// twice when only one passes), ok false when none does.
func (p *picker) sample(now int64, f filter, avoid []netip.AddrPort, rnd func() uint64) (a, b *entry, ok bool) {
	n := len(p.entries)
	if n == 1 {
		a = &p.entries[0]
		return a, a, p.passes(a, now, f, avoid)
	}
	// Fast path: random pairs, enough when few entries are filtered out.
	for range 4 {
		i, j := distinctPair(n, rnd)
		a, b = &p.entries[i], &p.entries[j]
		if p.passes(a, now, f, avoid) && p.passes(b, now, f, avoid) {
			return a, b, true
		}
	}
	// Slow path: choose among the entries that pass, by rank.
	passing := 0
	for i := range p.entries {
		if p.passes(&p.entries[i], now, f, avoid) {
			passing++
		}
	}
	switch passing {
	case 0:
		return nil, nil, false
	case 1:
		a = p.nthPassing(0, now, f, avoid)
		return a, a, true
	}
	i, j := distinctPair(passing, rnd)
	return p.nthPassing(i, now, f, avoid), p.nthPassing(j, now, f, avoid), true
}

func (p *picker) passes(e *entry, now int64, f filter, avoid []netip.AddrPort) bool {
	if f.notAvoided && slices.Contains(avoid, e.endpoint.Addr) {
		return false
	}
	return !f.available || e.state.breaker.available(now)
}

// nthPassing returns the entry of rank n among those passing f. Breaker
// state may change between counting and ranking; then it settles for the
// last passing entry, or the first entry.
func (p *picker) nthPassing(n int, now int64, f filter, avoid []netip.AddrPort) *entry {
	last := &p.entries[0]
	for i := range p.entries {
		e := &p.entries[i]
		if !p.passes(e, now, f, avoid) {
			continue
		}
		if n == 0 {
			return e
		}
		n--
		last = e
	}
	return last
}

// distinctPair returns two distinct uniform random indexes below n (n ≥ 2).
func distinctPair(n int, rnd func() uint64) (i, j int) {
	i = randBelow(n, rnd)
	j = randBelow(n-1, rnd)
	if j >= i {
		j++
	}
	return i, j
}

// randBelow maps 64 random bits to [0, n) by multiplication (Lemire),
// avoiding a division.
func randBelow(n int, rnd func() uint64) int {
	hi, _ := bits.Mul64(rnd(), uint64(n))
	return int(hi)
}
