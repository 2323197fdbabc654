package ratelimit

import (
	"fmt"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
)

const (
	web   = "spiffe://cluster.local/ns/demo/sa/web"
	batch = "spiffe://cluster.local/ns/demo/sa/batch"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// offer sends rps requests per second, evenly spaced, for seconds seconds
// from start on a fake clock, from each caller in turn, and returns how
// many each caller got through in each second and the refusals' scopes.
func offer(l *Limiter, policy *authz.RateLimit, start time.Time, seconds int, rps int, callers ...string) (allowed map[string][]int, scopes map[string]int) {
	allowed = make(map[string][]int)
	scopes = make(map[string]int)
	for _, c := range callers {
		allowed[c] = make([]int, seconds)
	}
	step := time.Second / time.Duration(rps)
	for i := 0; i < seconds*rps; i++ {
		now := start.Add(time.Duration(i) * step)
		for _, c := range callers {
			if r := l.Allow(now, c, policy); r != nil {
				scopes[r.Scope]++
				continue
			}
			allowed[c][i/rps]++
		}
	}
	return allowed, scopes
}

func within(t *testing.T, what string, perSecond []int, want, margin int) {
	t.Helper()
	for s, n := range perSecond {
		if n < want-margin || n > want+margin {
			t.Errorf("%s: second %d let %d through, want %d ± %d (all: %v)", what, s, n, want, margin, perSecond)
		}
	}
}

func TestPerIdentityLimitLetsItsRateThroughEachSecond(t *testing.T) {
	policy := &authz.RateLimit{PerIdentity: 10}
	allowed, scopes := offer(NewLimiter(0), policy, epoch, 5, 50, web)
	within(t, "10/s offered 50/s", allowed[web], 10, 2)
	if scopes[metrics.ScopeIdentity] < 5*(50-12) {
		t.Errorf("refusals by scope %v, want about 200 by %q", scopes, metrics.ScopeIdentity)
	}
}

func TestOverrideIdentityGetsItsOwnLimit(t *testing.T) {
	policy := &authz.RateLimit{PerIdentity: 10, Overrides: []authz.RateLimitOverride{{RequestsPerSecond: 25, Identities: []string{batch}}}}
	allowed, scopes := offer(NewLimiter(0), policy, epoch, 4, 50, web, batch)
	within(t, "web at 10/s", allowed[web], 10, 2)
	within(t, "batch overridden to 25/s", allowed[batch], 25, 3)
	if scopes[metrics.ScopeOverride] == 0 || scopes[metrics.ScopeIdentity] == 0 {
		t.Errorf("refusals by scope %v, want both %q and %q", scopes, metrics.ScopeIdentity, metrics.ScopeOverride)
	}
}

func TestUnmeshedClientsShareOneBucket(t *testing.T) {
	policy := &authz.RateLimit{PerIdentity: 10}
	l := NewLimiter(0)
	// Two unmeshed callers (identity "") at 50/s each: 10/s between them.
	allowed, _ := offer(l, policy, epoch, 4, 50, "", "")
	within(t, "both unmeshed callers together", allowed[""], 10, 2)
	// An override naming "" does not make unmeshed clients an identity.
	policy.Overrides = []authz.RateLimitOverride{{RequestsPerSecond: 40, Identities: []string{""}}}
	allowed, _ = offer(l, &authz.RateLimit{PerIdentity: 10, Overrides: policy.Overrides}, epoch.Add(time.Hour), 2, 50, "")
	within(t, "unmeshed with an override of \"\"", allowed[""], 10, 2)
}

func TestTotalLimitIsSharedByAllIdentities(t *testing.T) {
	policy := &authz.RateLimit{Total: 20, PerIdentity: 100}
	ids := []string{web, batch, "spiffe://cluster.local/ns/demo/sa/c", "spiffe://cluster.local/ns/demo/sa/d", ""}
	allowed, scopes := offer(NewLimiter(0), policy, epoch, 4, 25, ids...)
	sum := make([]int, 4)
	for _, id := range ids {
		for s, n := range allowed[id] {
			sum[s] += n
		}
	}
	within(t, "all identities together", sum, 20, 2)
	if scopes[metrics.ScopeTotal] == 0 || scopes[metrics.ScopeIdentity] != 0 {
		t.Errorf("refusals by scope %v, want only %q", scopes, metrics.ScopeTotal)
	}
}

// A request the total refuses gives its identity's token back: a client
// is not charged for what it did not get.
func TestRefusalByTotalDoesNotChargeTheIdentity(t *testing.T) {
	l := NewLimiter(0)
	tight := &authz.RateLimit{Total: 1, PerIdentity: 10}
	// batch takes the total's whole burst.
	for range Burst(1) {
		if r := l.Allow(epoch, batch, tight); r != nil {
			t.Fatalf("batch refused: %v", r)
		}
	}
	// web's bucket is full; the total refuses it.
	if r := l.Allow(epoch, web, tight); r == nil || r.Scope != metrics.ScopeTotal {
		t.Fatalf("web: %v, want refused by the total", r)
	}
	// Without the total, web's whole burst is still there.
	for i := range Burst(10) {
		if r := l.Allow(epoch, web, &authz.RateLimit{PerIdentity: 10}); r != nil {
			t.Errorf("web's request %d refused by %v: the total's refusal took its token", i, r)
		}
	}
}

func TestIdentityBucketsAreBounded(t *testing.T) {
	l := NewLimiter(100)
	policy := &authz.RateLimit{PerIdentity: 1}
	for i := range 1000 {
		l.Allow(epoch, fmt.Sprintf("spiffe://cluster.local/ns/demo/sa/sa-%d", i), policy)
		l.Allow(epoch, web, policy) // web stays recently used
	}
	if n := l.Identities(); n != 100 {
		t.Errorf("%d buckets after 1001 identities, want the bound 100", n)
	}
	// web's bucket survived (it is empty: refused), sa-0's did not (new: full).
	if r := l.Allow(epoch, web, policy); r == nil {
		t.Error("web's bucket was dropped though it was used last")
	}
	if r := l.Allow(epoch, "spiffe://cluster.local/ns/demo/sa/sa-0", policy); r != nil {
		t.Errorf("sa-0 refused (%v): its bucket should have been dropped and made anew", r)
	}
	if NewLimiter(0).max != MaxIdentities {
		t.Errorf("default bound %d, want %d", NewLimiter(0).max, MaxIdentities)
	}
}

// A changed policy changes the rates without refilling the buckets: a
// client that has used its tokens does not get a fresh burst from an edit.
func TestChangedLimitKeepsTheBuckets(t *testing.T) {
	l := NewLimiter(0)
	allowed, _ := offer(l, &authz.RateLimit{PerIdentity: 10}, epoch, 2, 50, web)
	within(t, "before the change", allowed[web], 10, 2)
	// The same limits in a new policy value (the controller sent an
	// update): web's empty bucket stays empty.
	now := epoch.Add(2*time.Second - time.Millisecond)
	if r := l.Allow(now, web, &authz.RateLimit{PerIdentity: 10}); r == nil {
		t.Error("a new policy value with the same limit refilled web's bucket")
	}
	allowed, _ = offer(l, &authz.RateLimit{PerIdentity: 30}, epoch.Add(2*time.Second), 3, 50, web)
	within(t, "after raising to 30/s", allowed[web], 30, 3)
}

func TestBurstIsATenthOfASecondAtLeastTwo(t *testing.T) {
	for _, c := range []struct {
		rps  float64
		want int
	}{{0.5, 2}, {1, 2}, {10, 2}, {15, 2}, {25, 3}, {100, 10}, {1000, 100}} {
		if got := Burst(c.rps); got != c.want {
			t.Errorf("Burst(%g) = %d, want %d", c.rps, got, c.want)
		}
	}
}
