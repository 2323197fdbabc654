package retry

import (
	"testing"
	"time"
)

func TestBackoffIsExponentialWithFullJitter(t *testing.T) {
	const base, max = 25 * time.Millisecond, 250 * time.Millisecond
	top := func(n int64) int64 { return n - 1 } // the largest draw
	bottom := func(int64) int64 { return 0 }
	for n, ceiling := range map[int]time.Duration{1: 25 * time.Millisecond, 2: 50 * time.Millisecond,
		3: 100 * time.Millisecond, 4: 200 * time.Millisecond, 5: 250 * time.Millisecond, 30: 250 * time.Millisecond} {
		if got := backoff(n, base, max, top); got != ceiling {
			t.Errorf("retry %d: longest back-off %v, want %v", n, got, ceiling)
		}
		if got := backoff(n, base, max, bottom); got != 0 {
			t.Errorf("retry %d: shortest back-off %v, want 0 (full jitter)", n, got)
		}
		seen := map[time.Duration]bool{}
		for range 1000 {
			d := backoff(n, base, max, nil)
			if d < 0 || d > ceiling {
				t.Fatalf("retry %d: back-off %v outside [0, %v]", n, d, ceiling)
			}
			seen[d/time.Millisecond] = true
		}
		if len(seen) < 10 {
			t.Errorf("retry %d: 1000 back-offs took only %d distinct millisecond values: not jittered", n, len(seen))
		}
	}
	if got := backoff(1, 0, 0, top); got != DefaultBackoffBase {
		t.Errorf("default first back-off ceiling %v, want %v", got, DefaultBackoffBase)
	}
}
