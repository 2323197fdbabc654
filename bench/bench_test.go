package bench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"
)

// TestSmokeRunMeasuresEveryScenario runs the -short benchmark for real:
// every scenario must carry every protocol's traffic without errors, at
// the rate asked for, and report figures that make sense.
func TestSmokeRunMeasuresEveryScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the benchmark: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and iptables")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := ShortConfig()
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	report, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := len(Scenarios) * len(Protocols) * len(cfg.Rates)
	if len(report.Summaries) != want {
		t.Fatalf("got %d summaries, want %d", len(report.Summaries), want)
	}
	for _, s := range report.Summaries {
		name := s.Scenario + "/" + s.Protocol
		rate := float64(s.Rate)
		if s.Errors != 0 {
			t.Errorf("%s: %d errors in %d requests", name, s.Errors, s.Requests)
		}
		if s.Latency.P50 <= 0 || s.Latency.P99 < s.Latency.P50 {
			t.Errorf("%s: latency %+v", name, s.Latency)
		}
		if s.RPS < 0.9*rate || s.RPS > 1.1*rate {
			t.Errorf("%s: %.1f rps, want %d ± 10%%", name, s.RPS, s.Rate)
		}
		if s.Scenario == "skein" {
			if len(s.Proxies) != 2 {
				t.Errorf("%s: measured %d proxies, want client and server", name, len(s.Proxies))
			}
			for _, p := range s.Proxies {
				if p.PeakRSSMB <= 0 || p.CPUPer1k < 0 {
					t.Errorf("%s: %s proxy: %+v", name, p.Role, p)
				}
			}
		}
	}
}
