package balance

import (
	"math"
	"sync/atomic"
)

// fadeComparisons is how many comparisons an idle endpoint must lose for
// its estimate to fade by a factor of e (see rttSample.fadedAt).
const fadeComparisons = 20

// decayAnswers bounds how long a peak lasts at high call rates: an answer
// below the estimate pulls it at least 1/decayAnswers of the way toward
// itself, however little time passed since the last (see nextSample).
const decayAnswers = 16

// peakCap bounds how far one answer raises the estimate: to at most this
// many times the estimate as last set. Failures are not capped.
const peakCap = 2

// rttSample is one published state of an endpoint's RTT estimate. A
// published rttSample is never modified again, so Pick reads it without a
// lock.
type rttSample struct {
	estimate float64 // nanoseconds
	at       int64   // when estimate was set, nanoseconds since the Balancer's epoch
	passed   int64   // the endpoint's passedOver count when estimate was set
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

// fadedAt is the estimate as seen when the endpoint has been passed over
// passed times in all: it fades toward zero by a factor of e every
// fadeComparisons comparisons the endpoint lost, while idle, since the
// estimate was set. An endpoint that loses every P2C comparison gets no
// samples; without this fading its old (high) estimate would keep it
// avoided forever. With it, the endpoint is cheap enough to win a
// comparison again after fadeComparisons × ln(its estimate ÷ the others')
// lost comparisons, and is measured again.
//
// The fading counts lost comparisons, not seconds, because how long an
// avoided endpoint waits decides how much one wrong estimate costs it. With
// one sequential client nothing is in flight, so the estimates alone rank
// the endpoints: of three, the cheapest gets 2/3 of the calls, the dearest
// none, until the estimates change. Fading over 2 s of wall time, at 100
// calls a second a 5% noise in an estimate kept an endpoint out for about
// 10 calls and one 30 ms hiccup against a normal 0.5 ms for 8 s (800
// calls): identical replicas drifted to 16/35/49% of 3,000 calls. Counted
// in comparisons, the wait is the same at any call rate. Only idle
// endpoints fade: an endpoint passed over because of its requests in flight
// is judged by a load that is current.
func (s *rttSample) fadedAt(passed int64) float64 {
	lost := passed - s.passed
	if lost <= 0 {
		return s.estimate
	}
	return s.estimate * math.Exp(-float64(lost)/fadeComparisons)
}

// observe folds one RTT sample (nanoseconds) into the estimate; failed says
// the sample is a failure penalty. passed is the endpoint's passedOver
// count now. slot is storage owned by the caller that observe fills and
// publishes; the caller must not touch it afterwards. Handles pass a field
// of their own, which keeps Pick+Done at one allocation.
func (r *rttEstimate) observe(rtt float64, failed bool, now, passed int64, window float64, slot *rttSample) {
	for {
		old := r.current.Load()
		*slot = nextSample(old, rtt, failed, now, passed, window)
		if r.current.CompareAndSwap(old, slot) {
			return
		}
		// Lost a race with another update: slot was not published, so it
		// is still ours to overwrite.
	}
}

// nextSample is the peak-EWMA step. The first real answer replaces the
// DefaultRTT prior outright, and so does any sample above the (faded)
// estimate: peaks count at once, but one answer raises the estimate to at
// most peakCap × the estimate as last set, so one scheduling hiccup (tens
// of ms against a normal 0.5 ms) costs the endpoint a few dozen
// comparisons, not hundreds; a replica that has really become slower
// doubles its estimate with each answer. A failure penalty is not capped.
// A sample below pulls the estimate toward it with weight
// 1-exp(-elapsed/window), so that a single fast answer does not erase a
// slow history, but with at least 1/decayAnswers: under concurrent load an
// endpoint answers every millisecond or so, and with the time weight alone
// its estimate would be the highest answer of the last few seconds. One
// rare slow answer on one of three identical replicas then doubled its
// estimate for the whole 2 s window, and 4 callers sharing one connection
// gave the replicas 43/30/27% (11 of 100 simulated runs outside 25-42%).
// With the floor a peak fades by about e every decayAnswers answers at any
// call rate, as an idle endpoint's estimate does every fadeComparisons
// lost comparisons.
func nextSample(old *rttSample, rtt float64, failed bool, now, passed int64, window float64) rttSample {
	at := max(now, old.at)
	if !old.measured {
		return rttSample{estimate: rtt, at: at, passed: passed, measured: true}
	}
	if !failed {
		rtt = min(rtt, peakCap*old.estimate)
	}
	current := old.fadedAt(passed)
	if rtt >= current {
		return rttSample{estimate: rtt, at: at, passed: passed, measured: true}
	}
	keep := min(math.Exp(-float64(at-old.at)/window), 1-1.0/decayAnswers)
	return rttSample{estimate: current*keep + rtt*(1-keep), at: at, passed: passed, measured: true}
}
