package identity

import (
	"math/rand/v2"
	"time"
)

// DefaultRenew is the fraction of a certificate's lifetime, counted from
// when the proxy received it, after which it is renewed. At one half, a
// controller outage of up to half a lifetime that starts just before a
// renewal is survived: the certificate held stays valid through it.
const DefaultRenew = 0.5

// Back-off between failed Certify calls: exponential from minRetry, capped
// at maxRetry, with jitter so that proxies that lost the controller at the
// same moment do not come back at the same moment.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 10 * time.Second
)

// schedule says when to ask for a certificate next. It is pure: the clock
// and the randomness are passed in, so that tests can drive it.
type schedule struct {
	renew float64 // fraction of the lifetime, in (0, 1)
	// jitter returns a duration in [0, d]; nil means uniformly random.
	jitter func(d time.Duration) time.Duration
}

// renewAfter is how long after now, when a certificate valid until notAfter
// was received, to renew it.
func (s schedule) renewAfter(now, notAfter time.Time) time.Duration {
	return max(time.Duration(float64(notAfter.Sub(now))*s.renew), 0)
}

// retryAfter is how long after now to try again after failures (>= 1)
// Certify calls in a row. The wait doubles from minRetry up to maxRetry and
// is jittered down by up to half. While a certificate is held (notAfter is
// not zero) the wait is also at most half of the life it has left, so
// that retries come closer together as expiry nears and one always falls
// before it; it never drops below minRetry.
func (s schedule) retryAfter(failures int, now, notAfter time.Time) time.Duration {
	backoff := minRetry
	for i := 1; i < failures && backoff < maxRetry; i++ {
		backoff *= 2
	}
	backoff = min(backoff, maxRetry)
	wait := backoff - s.jitterUpTo(backoff/2)
	if !notAfter.IsZero() {
		if left := notAfter.Sub(now); left > 0 {
			wait = min(wait, left/2)
		}
	}
	return max(wait, minRetry)
}

func (s schedule) jitterUpTo(d time.Duration) time.Duration {
	if s.jitter != nil {
		return s.jitter(d)
	}
	return rand.N(d + 1)
}
