package balance

import (
	"sync"
	"sync/atomic"
	"time"
)

// breaker is an endpoint's failure accrual: closed (normal), open (ejected
// until openUntil) or half-open (the ejection has ended; one probe request
// at a time may pass). Pick reads it through atomics; the rare transitions
// take mu.
type breaker struct {
	// openUntil is 0 while closed; otherwise the time (nanoseconds since the
	// Balancer's epoch) at which the ejection ends and the breaker is
	// half-open.
	openUntil atomic.Int64
	// probing is true while a half-open probe request is in flight.
	probing             atomic.Bool
	consecutiveFailures atomic.Int64

	mu      sync.Mutex
	backoff time.Duration // length of the current ejection; guarded by mu
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

// succeeded records a successful request. Only the probe closes the
// breaker: a success from a request that was sent before the ejection says
// little about the endpoint now.
func (b *breaker) succeeded(probe bool) {
	if b.consecutiveFailures.Load() != 0 {
		b.consecutiveFailures.Store(0)
	}
	if !probe {
		return
	}
	b.mu.Lock()
	b.openUntil.Store(0)
	b.backoff = 0
	b.mu.Unlock()
	b.probing.Store(false)
}

// failed records a failed request: a failed probe re-ejects with double the
// back-off; otherwise accrual consecutive failures eject a closed endpoint
// (accrual 0 never does).
func (b *breaker) failed(probe bool, now int64, accrual int, ejectMin, ejectMax time.Duration) {
	n := b.consecutiveFailures.Add(1)
	if probe {
		b.mu.Lock()
		b.backoff = min(max(2*b.backoff, ejectMin), ejectMax)
		b.openUntil.Store(now + int64(b.backoff))
		b.mu.Unlock()
		// Released after openUntil moved, so no second probe slips in.
		b.probing.Store(false)
		return
	}
	if accrual == 0 || n < int64(accrual) || b.openUntil.Load() != 0 {
		return
	}
	b.mu.Lock()
	if b.openUntil.Load() == 0 {
		b.backoff = ejectMin
		b.openUntil.Store(now + int64(b.backoff))
	}
	b.mu.Unlock()
}
