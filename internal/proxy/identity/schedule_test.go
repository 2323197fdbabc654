package identity

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func TestRenewalComesAtHalfTheLife(t *testing.T) {
	s := schedule{renew: DefaultRenew}
	tests := []struct {
		name     string
		notAfter time.Time
		want     time.Duration
	}{
		{"24 h certificate", t0.Add(24 * time.Hour), 12 * time.Hour},
		{"30 s certificate", t0.Add(30 * time.Second), 15 * time.Second},
		{"already expired", t0.Add(-time.Second), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.renewAfter(t0, tt.notAfter); got != tt.want {
				t.Errorf("renewAfter = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRetriesBackOffWithJitterAndNeverWaitPastExpiry(t *testing.T) {
	none := func(time.Duration) time.Duration { return 0 }
	most := func(d time.Duration) time.Duration { return d }
	day := t0.Add(24 * time.Hour)
	tests := []struct {
		name     string
		jitter   func(time.Duration) time.Duration
		failures int
		notAfter time.Time
		want     time.Duration
	}{
		{"first failure", none, 1, day, 100 * time.Millisecond},
		{"first failure, most jitter (floor)", most, 1, day, 100 * time.Millisecond},
		{"second failure", none, 2, day, 200 * time.Millisecond},
		{"fourth failure, most jitter", most, 4, day, 400 * time.Millisecond},
		{"seventh failure", none, 7, day, 6400 * time.Millisecond},
		{"capped", none, 8, day, 10 * time.Second},
		{"capped, most jitter", most, 50, day, 5 * time.Second},
		{"no certificate yet", none, 50, time.Time{}, 10 * time.Second},
		{"4 s left: half of it", none, 50, t0.Add(4 * time.Second), 2 * time.Second},
		{"150 ms left: the floor", none, 50, t0.Add(150 * time.Millisecond), 100 * time.Millisecond},
		{"expired: back-off again", none, 50, t0.Add(-time.Minute), 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := schedule{renew: DefaultRenew, jitter: tt.jitter}
			if got := s.retryAfter(tt.failures, t0, tt.notAfter); got != tt.want {
				t.Errorf("retryAfter(%d) = %s, want %s", tt.failures, got, tt.want)
			}
		})
	}
}

// TestOutageOfJustUnderHalfALifeIsSurvived walks the schedule through a
// controller outage that begins at the renewal of a 30 s certificate and
// lasts 14 s, with the most and the least jitter: a retry falls inside the
// last second before expiry, after the controller is back.
func TestOutageOfJustUnderHalfALifeIsSurvived(t *testing.T) {
	const lifetime = 30 * time.Second
	for _, jitter := range []func(time.Duration) time.Duration{
		func(time.Duration) time.Duration { return 0 },
		func(d time.Duration) time.Duration { return d },
	} {
		s := schedule{renew: DefaultRenew, jitter: jitter}
		notAfter := t0.Add(lifetime)
		now := t0.Add(s.renewAfter(t0, notAfter))
		back := now.Add(14 * time.Second)
		failures := 0
		for now.Before(back) {
			failures++
			now = now.Add(s.retryAfter(failures, now, notAfter))
		}
		if !now.Before(notAfter) {
			t.Errorf("first try after the controller's return at %s, certificate expired at %s (%d failures)",
				now.Sub(t0), lifetime, failures)
		}
	}
}
