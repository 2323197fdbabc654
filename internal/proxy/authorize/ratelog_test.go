package authorize

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A flood of denials of one Server is one line per interval; another
// Server still gets its own, and the next line says how many were held
// back.
func TestRateLogHoldsBackRepeatsPerKey(t *testing.T) {
	var out strings.Builder
	l := newRateLog(slog.New(slog.NewTextHandler(&out, nil)), time.Hour)
	for range 100 {
		l.info("deny:request:shop/web", "request denied")
	}
	l.info("deny:request:shop/api", "request denied")
	if got := strings.Count(out.String(), "request denied"); got != 2 {
		t.Fatalf("%d lines, want one per key:\n%s", got, out.String())
	}
	l.interval = 0
	l.info("deny:request:shop/web", "request denied")
	if !strings.Contains(out.String(), "not_logged_since_last=99") {
		t.Errorf("the next line does not say 99 were held back:\n%s", out.String())
	}
}
