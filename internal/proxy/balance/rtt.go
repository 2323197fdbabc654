package balance

import (
	"math"
	"sync/atomic"
)

// rttSample is one published state of an endpoint's RTT estimate. A
// published rttSample is never modified again, so Pick reads it without a
// lock.
type rttSample struct {
	estimate float64 // nanoseconds
	at       int64   // when estimate was set, nanoseconds since the Balancer's epoch
	measured bool    // false while estimate is still the DefaultRTT prior
}

// rttEstimate is an endpoint's peak-EWMA round-trip time, updated without
// locks: each update publishes a new rttSample with compare-and-swap.
type rttEstimate struct {
	current atomic.Pointer[rttSample]
}

func newRTTEstimate(prior float64, now int64) *rttEstimate {
	r := &rttEstimate{}
	r.current.Store(&rttSample{estimate: prior, at: now})
	return r
}

// decayedAt is the estimate as seen at now: it fades toward zero over the
// decay window since it was last set. An endpoint that loses every P2C
// comparison gets no samples; without this fading its old (high) estimate
// would keep it avoided forever. With it, the endpoint is eventually cheap
// enough to win a comparison and is measured again.
func (s *rttSample) decayedAt(now int64, window float64) float64 {
	elapsed := now - s.at
	if elapsed <= 0 {
		return s.estimate
	}
	return s.estimate * math.Exp(-float64(elapsed)/window)
}

// observe folds one RTT sample (nanoseconds) into the estimate. slot is
// storage owned by the caller that observe fills and publishes; the caller
// must not touch it afterwards. Handles pass a field of their own, which
// keeps Pick+Done at one allocation.
func (r *rttEstimate) observe(rtt float64, now int64, window float64, slot *rttSample) {
	for {
		old := r.current.Load()
		*slot = nextSample(old, rtt, now, window)
		if r.current.CompareAndSwap(old, slot) {
			return
		}
		// Lost a race with another update: slot was not published, so it
		// is still ours to overwrite.
	}
}

// nextSample is the peak-EWMA step. The first real answer replaces the
// DefaultRTT prior outright, and so does any sample above the current
// estimate (peaks count at once). A sample below pulls the estimate toward
// it with weight 1-exp(-elapsed/window), so that a single fast answer
// does not erase a slow history.
func nextSample(old *rttSample, rtt float64, now int64, window float64) rttSample {
	at := max(now, old.at)
	current := old.decayedAt(now, window)
	if !old.measured || rtt >= current {
		return rttSample{estimate: rtt, at: at, measured: true}
	}
	keep := math.Exp(-float64(at-old.at) / window)
	return rttSample{estimate: current*keep + rtt*(1-keep), at: at, measured: true}
}
