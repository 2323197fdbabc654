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
// every scenario (Skein with and without mTLS, the peers) must carry every
// protocol's traffic without errors, at the rate asked for or at
// saturation, and report figures that make sense for each proxy process,
// turnarounds (traced with perf) included.
func TestSmokeRunMeasuresEveryScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the benchmark: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and iptables")
	}
	// The deadline turns a hang into a failure. It covers building Skein's
	// binaries and installing fortio, both cold on a fresh CI machine (the
	// static build shares little of the test build's cache): 4 minutes
	// were once not enough for the build alone.
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cfg := ShortConfig()
	cfg.Turnaround = true
	for _, s := range Scenarios { // also those that run only on request
		cfg.Scenarios = append(cfg.Scenarios, s.Name)
	}
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	report, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := len(Scenarios) * len(Protocols) * len(cfg.loadRates())
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
		if s.Rate > 0 && (s.RPS < 0.9*rate || s.RPS > 1.1*rate) {
			t.Errorf("%s: %.1f rps, want %d ± 10%%", name, s.RPS, s.Rate)
		}
		if s.Rate == 0 && s.Scenario != "direct" && s.ThroughputRatio <= 0 {
			t.Errorf("%s: saturation throughput ratio %v, want a positive ratio to direct", name, s.ThroughputRatio)
		}
		wantProxies := scenarioNamed(t, s.Scenario).Proxies
		if len(s.Proxies) != wantProxies {
			t.Errorf("%s: measured %d proxies, want %d", name, len(s.Proxies), wantProxies)
		}
		for _, p := range s.Proxies {
			if p.PeakRSSMB <= 0 || p.CPUPer1k < 0 {
				t.Errorf("%s: %s proxy: %+v", name, p.Role, p)
			}
			// Traced for a second at 100 rps, every request crossing
			// each proxy twice: some 200 turnarounds.
			switch tr := p.Turnaround; {
			case s.Rate == 0 && tr != nil:
				t.Errorf("%s at saturation: %s proxy traced for turnarounds: %+v", name, p.Role, *tr)
			case s.Rate > 0 && tr == nil:
				t.Errorf("%s: %s proxy: no turnarounds", name, p.Role)
			case s.Rate > 0 && (tr.Count < s.Rate || tr.P50US <= 0 || tr.P90US < tr.P50US):
				t.Errorf("%s: %s proxy: turnarounds %+v, want %d or more, 0 < p50 <= p90", name, p.Role, *tr, s.Rate)
			}
		}
	}
}

func scenarioNamed(t *testing.T, name string) Scenario {
	t.Helper()
	for _, s := range Scenarios {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no scenario %s", name)
	return Scenario{}
}
