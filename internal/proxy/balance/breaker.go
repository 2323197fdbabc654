package balance

import (
	"sync"
	"sync/atomic"
	"time"
)

// breaker is an endpoint's circuit breaker in one scope: closed (normal),
// open (ejected until openUntil) or half-open (the ejection has ended; one
// probe request at a time may pass). Pick reads it through atomics; the
// rare transitions, and the success-rate window, take mu.
type breaker struct {
	// openUntil is 0 while closed; otherwise the time (nanoseconds since the
	// Balancer's epoch) at which the ejection ends and the breaker is
	// half-open.
	openUntil atomic.Int64
	// probing is true while a half-open probe request is in flight.
	probing             atomic.Bool
	consecutiveFailures atomic.Int64

	mu      sync.Mutex
	backoff time.Duration // length of the current ejection, jitter aside; guarded by mu
	window  outcomeWindow // guarded by mu; fed only in success-rate mode
}

type breakerState int

const (
	breakerClosed breakerState = iota
	breakerOpen
	breakerHalfOpen
)

func (b *breaker) state(now int64) breakerState {
	switch until := b.openUntil.Load(); {
	case until == 0:
		return breakerClosed
	case now < until:
		return breakerOpen
	default:
		return breakerHalfOpen
	}
}

// ejected reports whether the breaker is open or half-open.
func (b *breaker) ejected() bool {
	return b.openUntil.Load() != 0
}

// available reports whether Pick may choose the endpoint: closed, or
// half-open with no probe in flight.
func (b *breaker) available(now int64) bool {
	switch b.state(now) {
	case breakerClosed:
		return true
	case breakerHalfOpen:
		return !b.probing.Load()
	default:
		return false
	}
}

// admit is called for the endpoint Pick chose. It reports whether the
// request may go (ok) and whether it is the half-open probe; ok is false
// when the breaker changed since the choice (another request took the
// probe, or the endpoint was ejected).
func (b *breaker) admit(now int64) (probe, ok bool) {
	switch b.state(now) {
	case breakerClosed:
		return false, true
	case breakerHalfOpen:
		if b.probing.CompareAndSwap(false, true) {
			return true, true
		}
	}
	return false, false
}

// Reasons of an ejection, the reason label of balancer_ejections_total.
const (
	ReasonConsecutive = "consecutive"
	ReasonSuccessRate = "success_rate"
	ReasonProbe       = "probe" // the half-open probe failed
)

// record feeds one request's outcome to the breaker and returns the
// ejection it calls for: reason is empty when none. Only the probe closes
// the breaker (closed reports that): a success from a request sent before
// the ejection says little about the endpoint now. A failed probe ejects
// again at once, with twice the back-off (that ejection is not capped: the
// endpoint is already counted as ejected).
func (b *breaker) record(p *BreakerPolicy, probe, failed bool, now int64, rnd func() uint64) (reason string, closed bool) {
	n := int64(0)
	if failed {
		n = b.consecutiveFailures.Add(1)
	} else if b.consecutiveFailures.Load() != 0 {
		b.consecutiveFailures.Store(0)
	}
	if p.SuccessRate > 0 && !probe {
		b.mu.Lock()
		b.window.add(now, failed, p.Window)
		b.mu.Unlock()
	}
	if probe {
		b.mu.Lock()
		if failed {
			b.backoff = min(max(2*b.backoff, p.MinPenalty), p.MaxPenalty)
			b.openUntil.Store(now + jittered(b.backoff, p.Jitter, rnd))
		} else {
			b.openUntil.Store(0)
			b.backoff = 0
			b.window.reset()
		}
		b.mu.Unlock()
		// Released after openUntil moved, so no second probe slips in.
		b.probing.Store(false)
		if failed {
			return ReasonProbe, false
		}
		return "", true
	}
	if !failed || b.ejected() {
		return "", false
	}
	if p.Consecutive > 0 && n >= int64(p.Consecutive) {
		return ReasonConsecutive, false
	}
	if p.SuccessRate > 0 {
		b.mu.Lock()
		total, failures := b.window.counts(now, p.Window)
		b.mu.Unlock()
		if total >= int64(p.MinRequests) && float64(total-failures) < p.SuccessRate*float64(total) {
			return ReasonSuccessRate, false
		}
	}
	return "", false
}

// eject opens a closed breaker for MinPenalty plus jitter; it reports false
// when the breaker was ejected already.
func (b *breaker) eject(p *BreakerPolicy, now int64, rnd func() uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ejected() {
		return false
	}
	b.backoff = p.MinPenalty
	b.openUntil.Store(now + jittered(b.backoff, p.Jitter, rnd))
	b.window.reset()
	return true
}

// jittered is d plus a random share of it up to jitter, in nanoseconds.
func jittered(d time.Duration, jitter float64, rnd func() uint64) int64 {
	if jitter <= 0 {
		return int64(d)
	}
	share := float64(rnd()>>11) / (1 << 53) // uniform in [0, 1)
	return int64(d) + int64(share*jitter*float64(d))
}

// windowBuckets is how finely the success-rate window is kept: outcomes
// older than Window leave it one tenth of a window at a time.
const windowBuckets = 10

// outcomeWindow counts requests and failures over the last Window, in
// buckets of Window/windowBuckets.
type outcomeWindow struct {
	buckets [windowBuckets]struct {
		start           int64 // bucket start, nanoseconds since the epoch; 0: unused
		total, failures int64
	}
}

func (w *outcomeWindow) add(now int64, failed bool, window time.Duration) {
	size := max(int64(window)/windowBuckets, 1)
	start := now/size*size + 1 // +1: a bucket starting at 0 is not unused
	bk := &w.buckets[(now/size)%windowBuckets]
	if bk.start != start {
		bk.start, bk.total, bk.failures = start, 0, 0
	}
	bk.total++
	if failed {
		bk.failures++
	}
}

// counts sums the buckets within the window ending now.
func (w *outcomeWindow) counts(now int64, window time.Duration) (total, failures int64) {
	for i := range w.buckets {
		bk := &w.buckets[i]
		if bk.start != 0 && bk.start > now-int64(window) {
			total += bk.total
			failures += bk.failures
		}
	}
	return total, failures
}

func (w *outcomeWindow) reset() {
	*w = outcomeWindow{}
}
