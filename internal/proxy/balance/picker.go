package balance

import (
	"math/bits"
	"net/netip"
	"slices"
)

// picker is an immutable snapshot of one endpoint set and the breaker
// scopes that judge it. Update and SetRouteBreakers build a new one; Pick
// only reads it (and the per-endpoint atomics it points to).
type picker struct {
	entries []entry
	service scopeView             // the Service-wide scope
	routes  map[string]*scopeView // route scopes by key
}

// admitAttempts bounds how often pick retries when the endpoint it chose
// changed breaker state under it (a concurrent Pick took the half-open
// probe). After that it sends the request anyway.
const admitAttempts = 3

// pick chooses an endpoint for one request in view's scope; probe reports
// that the request is the half-open breaker's probe. ok is false when no
// endpoint is available (every one is ejected). entries must not be empty.
func (p *picker) pick(view *scopeView, now int64, avoid []netip.AddrPort, rnd func() uint64) (i int, probe, ok bool) {
	for attempt := 1; ; attempt++ {
		i, ok := p.choose(view, now, avoid, rnd)
		if !ok {
			return 0, false, false
		}
		probe, admitted := view.health[i].breaker.admit(now)
		if admitted || attempt == admitAttempts {
			return i, probe, true
		}
	}
}

// filter says which entries a choice may use: notAvoided, only those the
// caller did not ask to avoid. Only available ones (their breaker lets a
// request through) in any case.
type filter struct {
	notAvoided bool
}

// Filters from strictest to loosest: avoid is a preference among available
// endpoints; an ejected endpoint is never chosen.
var (
	filtersWithAvoid = []filter{{notAvoided: true}, {notAvoided: false}}
	filtersNoAvoid   = []filter{{notAvoided: false}}
)

// choose is power of two choices: two distinct random entries that pass
// the strictest filter any entry passes, the cheaper of them wins (the
// first drawn on a tie). The loser, if it has nothing in flight, counts
// one more comparison lost, which fades its estimate (rttSample.fadedAt).
// ok is false when no endpoint is available.
func (p *picker) choose(view *scopeView, now int64, avoid []netip.AddrPort, rnd func() uint64) (i int, ok bool) {
	filters := filtersNoAvoid
	if len(avoid) > 0 {
		filters = filtersWithAvoid
	}
	for _, f := range filters {
		a, b, ok := p.sample(view, now, f, avoid, rnd)
		if !ok {
			continue
		}
		if a != b {
			if p.entries[b].cost(view.health[b]) < p.entries[a].cost(view.health[a]) {
				a, b = b, a
			}
			if p.entries[b].state.inFlight.Load() == 0 {
				view.health[b].passedOver.Add(1)
			}
		}
		return a, true
	}
	return 0, false
}

// sample returns two distinct random entries passing f (the same entry
// twice when only one passes), ok false when none does.
func (p *picker) sample(view *scopeView, now int64, f filter, avoid []netip.AddrPort, rnd func() uint64) (a, b int, ok bool) {
	n := len(p.entries)
	if n == 1 {
		return 0, 0, p.passes(view, 0, now, f, avoid)
	}
	// Fast path: random pairs, enough when few entries are filtered out.
	for range 4 {
		a, b = distinctPair(n, rnd)
		if p.passes(view, a, now, f, avoid) && p.passes(view, b, now, f, avoid) {
			return a, b, true
		}
	}
	// Slow path: choose among the entries that pass, by rank.
	passing := 0
	for i := range p.entries {
		if p.passes(view, i, now, f, avoid) {
			passing++
		}
	}
	switch passing {
	case 0:
		return 0, 0, false
	case 1:
		a = p.nthPassing(view, 0, now, f, avoid)
		return a, a, true
	}
	i, j := distinctPair(passing, rnd)
	return p.nthPassing(view, i, now, f, avoid), p.nthPassing(view, j, now, f, avoid), true
}

func (p *picker) passes(view *scopeView, i int, now int64, f filter, avoid []netip.AddrPort) bool {
	if f.notAvoided && slices.Contains(avoid, p.entries[i].endpoint.Addr) {
		return false
	}
	return view.health[i].breaker.available(now)
}

// nthPassing returns the index of the entry of rank n among those passing
// f. Breaker state may change between counting and ranking; then it
// settles for the last passing entry, or the first entry.
func (p *picker) nthPassing(view *scopeView, n int, now int64, f filter, avoid []netip.AddrPort) int {
	last := 0
	for i := range p.entries {
		if !p.passes(view, i, now, f, avoid) {
			continue
		}
		if n == 0 {
			return i
		}
		n--
		last = i
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
