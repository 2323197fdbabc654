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
		name string
		old  rttSample
		rtt  float64
		now  int64
		want float64
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
			rtt:  500 * ms, now: 0,
			want: 500 * ms,
		},
		{
			name: "peak is measured against the faded estimate",
			old:  rttSample{estimate: 100 * ms, measured: true},
			rtt:  50 * ms, now: 10 * sec, // faded to 36.8ms
			want: 50 * ms,
		},
		{
			name: "lower sample pulls with weight 1-exp(-elapsed/window)",
			old:  rttSample{estimate: 100 * ms, measured: true},
			rtt:  10 * ms, now: sec,
			want: func() float64 {
				keep := expDecay(time.Second, window)
				return 100*ms*keep*keep + 10*ms*(1-keep)
			}(),
		},
		{
			name: "lower sample at the same instant changes nothing",
			old:  rttSample{estimate: 100 * ms, measured: true},
			rtt:  10 * ms, now: 0,
			want: 100 * ms,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nextSample(&tt.old, tt.rtt, tt.now, float64(window))
			if math.Abs(got.estimate-tt.want) > 1 || !got.measured || got.at != tt.now {
				t.Errorf("nextSample = %+v, want estimate %.0fns at %d, measured", got, tt.want, tt.now)
			}
		})
	}
}

func TestEstimateFadesTowardZeroWhenUnsampled(t *testing.T) {
	s := rttSample{estimate: float64(time.Second), measured: true}
	window := float64(10 * time.Second)
	prev := s.decayedAt(0, window)
	for _, elapsed := range []time.Duration{time.Second, 10 * time.Second, time.Minute, time.Hour} {
		got := s.decayedAt(int64(elapsed), window)
		if got >= prev {
			t.Errorf("estimate after %v = %v, not below %v", elapsed, time.Duration(got), time.Duration(prev))
		}
		prev = got
	}
	if prev > 1 {
		t.Errorf("estimate an hour later = %vns, want about zero", prev)
	}
}
