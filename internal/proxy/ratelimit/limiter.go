// Package ratelimit is the inbound layer that enforces a Server's local
// rate limits (authz.RateLimit): a total limit over all requests to the
// Server, a limit per client identity (unmeshed clients share one bucket)
// and per-identity overrides. Limits are token buckets
// (golang.org/x/time/rate) local to this proxy; a request over one is
// answered 429 / RESOURCE_EXHAUSTED by the errors layer. It does not
// authorize: the authorization layer above it does.
package ratelimit

import (
	"container/list"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
)

// MaxIdentities bounds the per-identity buckets one Server keeps. Past it
// the least recently used bucket is dropped: a bucket idle for more than
// burst/rate seconds is full, so dropping it changes nothing; only a mesh
// with more than this many identities calling one Server at once would see
// a busy identity start again from a full bucket.
const MaxIdentities = 10_000

// Burst is the number of requests a bucket of rps requests per second lets
// through at once: a tenth of a second's worth, at least two. Linkerd's
// GCRA tolerates a whole second, which lets twice the limit through in a
// client's first second; a tenth keeps every second close to the limit.
// At least two, because with room for one token a client sending at the
// limit with the least jitter loses the time each token waits for a
// request that came a moment too early (measured: 9 a second at 10/s),
// and the first second of a flood gets at most limit + 2.
func Burst(rps float64) int {
	return max(2, int(math.Ceil(rps/10)))
}

// Limiter holds the buckets of one Server. It is safe for concurrent use.
type Limiter struct {
	mu    sync.Mutex
	total *bucket // nil without a total limit
	// identities are the per-identity buckets, most recently used first;
	// byID indexes them. The key "" is the unmeshed clients' shared bucket.
	identities *list.List // of *bucket
	byID       map[string]*list.Element
	max        int
	// policy is the RateLimit overrides was built from.
	policy    *authz.RateLimit
	overrides map[string]float64
}

type bucket struct {
	id  string
	rps float64
	lim *rate.Limiter
}

func newBucket(id string, rps float64, now time.Time) *bucket {
	b := &bucket{id: id, rps: rps, lim: rate.NewLimiter(rate.Limit(rps), Burst(rps))}
	b.lim.SetLimitAt(now, rate.Limit(rps)) // starts full, as of now
	return b
}

// setRate changes a bucket's limit keeping the tokens it holds (capped at
// the new burst), so a changed policy neither refills nor empties it.
func (b *bucket) setRate(rps float64, now time.Time) {
	if b.rps == rps {
		return
	}
	b.rps = rps
	b.lim.SetLimitAt(now, rate.Limit(rps))
	b.lim.SetBurstAt(now, Burst(rps))
}

// NewLimiter returns the buckets of one Server, keeping at most
// maxIdentities per-identity buckets (MaxIdentities if 0).
func NewLimiter(maxIdentities int) *Limiter {
	if maxIdentities <= 0 {
		maxIdentities = MaxIdentities
	}
	return &Limiter{identities: list.New(), byID: make(map[string]*list.Element), max: maxIdentities}
}

// Refusal says which limit refused a request.
type Refusal struct {
	Scope string  // metrics.ScopeTotal, ScopeIdentity or ScopeOverride
	RPS   float64 // that limit, in requests per second
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("%s limit of %g requests per second", r.Scope, r.RPS)
}

// Allow takes a token for a request of identity ("" for an unmeshed client)
// at now under policy, or returns the limit that refused it. The
// identity's own limit is checked first; a request it refuses takes no
// token from the total, and one the total refuses gives its identity's
// token back, so a client over its own limit does not eat the others'
// share.
func (l *Limiter) Allow(now time.Time, identity string, policy *authz.RateLimit) *Refusal {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.setTotal(policy.Total, now)
	rps, scope := l.identityLimit(identity, policy)
	var taken *rate.Reservation
	if rps > 0 {
		r := l.identityBucket(identity, rps, now).lim.ReserveN(now, 1)
		if !r.OK() || r.DelayFrom(now) > 0 {
			r.CancelAt(now)
			return &Refusal{Scope: scope, RPS: rps}
		}
		taken = r
	}
	if l.total != nil && !l.total.lim.AllowN(now, 1) {
		if taken != nil {
			taken.CancelAt(now)
		}
		return &Refusal{Scope: metrics.ScopeTotal, RPS: l.total.rps}
	}
	return nil
}

func (l *Limiter) setTotal(rps float64, now time.Time) {
	switch {
	case rps <= 0:
		l.total = nil
	case l.total == nil:
		l.total = newBucket("", rps, now)
	default:
		l.total.setRate(rps, now)
	}
}

// identityLimit is the limit of identity under policy (0: none) and its
// scope label: an override's, else the per-identity one.
func (l *Limiter) identityLimit(identity string, policy *authz.RateLimit) (float64, string) {
	if policy != l.policy {
		l.policy = policy
		l.overrides = make(map[string]float64)
		for _, o := range policy.Overrides {
			for _, id := range o.Identities {
				l.overrides[id] = o.RequestsPerSecond
			}
		}
	}
	if rps, ok := l.overrides[identity]; ok && identity != "" {
		return rps, metrics.ScopeOverride
	}
	return policy.PerIdentity, metrics.ScopeIdentity
}

// identityBucket returns identity's bucket at rps, made (and the least
// recently used one dropped past the bound) or moved to the front.
func (l *Limiter) identityBucket(identity string, rps float64, now time.Time) *bucket {
	if e, ok := l.byID[identity]; ok {
		l.identities.MoveToFront(e)
		b := e.Value.(*bucket)
		b.setRate(rps, now)
		return b
	}
	for l.identities.Len() >= l.max {
		oldest := l.identities.Back()
		delete(l.byID, oldest.Value.(*bucket).id)
		l.identities.Remove(oldest)
	}
	b := newBucket(identity, rps, now)
	l.byID[identity] = l.identities.PushFront(b)
	return b
}

// Identities is how many per-identity buckets the Limiter holds.
func (l *Limiter) Identities() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.identities.Len()
}
