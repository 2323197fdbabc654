package balance

import (
	"math"
	"testing"
	"time"
)

func expDecay(elapsed, window time.Duration) float64 {
	return math.Exp(-float64(elapsed) / float64(window))
}

func TestNextSample(t *testing.T) {
	const window = 10 * time.Second
	ms := float64(time.Millisecond)
	sec := int64(time.Second)
	tests := []struct {
		name   string
		old    rttSample
		rtt    float64
		failed bool
		now    int64
		passed int64
		want   float64
	}{
		{
			name: "first answer replaces a higher prior",
			old:  rttSample{estimate: 30 * ms},
			rtt:  2 * ms, now: sec,
			want: 2 * ms,
		},
		{
			name: "first answer replaces a lower prior",
			old:  rttSample{estimate: 30 * ms},
			rtt:  90 * ms, now: sec,
			want: 90 * ms,
		},
		{
			name: "peak replaces at once",
			old:  rttSample{estimate: 10 * ms, measured: true},
			rtt:  15 * ms, now: 0,
			want: 15 * ms,
		},
		{
			name: "peak raises the estimate at most twofold",
			old:  rttSample{estimate: 10 * ms, measured: true},
			rtt:  500 * ms, now: 0,
			want: 20 * ms,
		},
		{
			name: "a failure penalty is not capped",
			old:  rttSample{estimate: 10 * ms, measured: true},
			rtt:  1000 * ms, failed: true, now: 0,
			want: 1000 * ms,
		},
		{
			name: "peak is measured against the faded estimate",
			old:  rttSample{estimate: 100 * ms, measured: true},
			rtt:  50 * ms, now: 0, passed: 20, // faded to 36.8ms
			want: 50 * ms,
		},
		{
			name: "lower sample pulls with weight 1-exp(-elapsed/window)",
			old:  rttSample{estimate: 100 * ms, measured: true},
			rtt:  10 * ms, now: sec,
			want: func() float64 {
				keep := expDecay(time.Second, window)
				return 100*ms*keep + 10*ms*(1-keep)
			}(),
		},
		{
			name: "lower sample at the same instant pulls with weight 1/decayAnswers",
			old:  rttSample{estimate: 100 * ms, measured: true},
			rtt:  10 * ms, now: 0,
			want: 100*ms - 90*ms/decayAnswers,
		},
		{
			name: "lower sample soon after pulls with weight 1/decayAnswers",
			old:  rttSample{estimate: 100 * ms, measured: true},
			rtt:  10 * ms, now: int64(time.Millisecond),
			want: 100*ms - 90*ms/decayAnswers,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nextSample(&tt.old, tt.rtt, tt.failed, tt.now, tt.passed, float64(window))
			if math.Abs(got.estimate-tt.want) > 1 || !got.measured || got.at != tt.now || got.passed != tt.passed {
				t.Errorf("nextSample = %+v, want estimate %.0fns at %d, passed %d, measured", got, tt.want, tt.now, tt.passed)
			}
		})
	}
}

func TestEstimateFadesWithLostComparisonsNotTime(t *testing.T) {
	s := rttSample{estimate: float64(time.Second), passed: 5, measured: true}
	if got := s.fadedAt(5); got != float64(time.Second) {
		t.Errorf("estimate with no comparison lost = %v, want 1s whatever the time", time.Duration(got))
	}
	prev := s.fadedAt(5)
	for _, lost := range []int64{1, fadeComparisons, 10 * fadeComparisons, 100 * fadeComparisons} {
		got := s.fadedAt(5 + lost)
		if got >= prev {
			t.Errorf("estimate after %d comparisons lost = %v, not below %v", lost, time.Duration(got), time.Duration(prev))
		}
		prev = got
	}
	if prev > 1 {
		t.Errorf("estimate after %d comparisons lost = %vns, want about zero", 100*fadeComparisons, prev)
	}
}
