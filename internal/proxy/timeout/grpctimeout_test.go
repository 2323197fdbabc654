package timeout

import (
	"testing"
	"time"
)

func TestGRPCTimeoutValues(t *testing.T) {
	for _, tt := range []struct {
		v    string
		d    time.Duration
		okay bool
	}{
		{"1S", time.Second, true}, {"200m", 200 * time.Millisecond, true}, {"5u", 5 * time.Microsecond, true},
		{"7n", 7, true}, {"2M", 2 * time.Minute, true}, {"1H", time.Hour, true}, {"99999999H", maxDuration, true},
		{"", 0, false}, {"S", 0, false}, {"10", 0, false}, {"1s", 0, false}, {"123456789S", 0, false}, {"-1S", 0, false},
	} {
		d, ok := parseGRPCTimeout(tt.v)
		if d != tt.d || ok != tt.okay {
			t.Errorf("parseGRPCTimeout(%q) = %v %v, want %v %v", tt.v, d, ok, tt.d, tt.okay)
		}
	}
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{200 * time.Millisecond, "200000u"}, {time.Second, "1000000u"}, {90 * time.Second, "90000000u"},
		{time.Hour, "3600000m"}, {1500 * time.Microsecond, "1500000n"}, {0, "0n"},
	} {
		got := encodeGRPCTimeout(tt.d)
		if got != tt.want {
			t.Errorf("encodeGRPCTimeout(%v) = %q, want %q", tt.d, got, tt.want)
		}
		if back, _ := parseGRPCTimeout(got); back < tt.d {
			t.Errorf("%q reads back as %v, shorter than %v", got, back, tt.d)
		}
	}
}
