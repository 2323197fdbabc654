package retry

import (
	"math/rand/v2"
	"time"
)

// Back-off defaults (skein.io/retry-backoff "25ms-250ms").
const (
	DefaultBackoffBase = 25 * time.Millisecond
	DefaultBackoffMax  = 250 * time.Millisecond
)

// backoff is the wait before retry number n (1 for the first retry):
// exponential with full jitter, uniformly random in [0, min(max,
// base×2^(n-1))], so that clients failing together do not retry together.
func backoff(n int, base, max time.Duration, rnd func(int64) int64) time.Duration {
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if max <= 0 {
		max = DefaultBackoffMax
	}
	if max < base {
		max = base
	}
	ceiling := base
	for i := 1; i < n && ceiling < max; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, max)
	if rnd == nil {
		rnd = rand.Int64N
	}
	return time.Duration(rnd(int64(ceiling) + 1))
}
