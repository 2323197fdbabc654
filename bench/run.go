package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
)

// Run measures every selected scenario, protocol and rate, Repetitions
// times, interleaving the scenarios, and returns the figures. It needs
// root. Everything it creates (namespaces, processes, temporary files) is
// removed before it returns, also when ctx is cancelled.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("skein-bench needs root: it creates network namespaces and iptables rules (try: sudo go run ./bench/cmd/skein-bench)")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating profile directory: %w", err)
		}
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	root := cfg.ModuleRoot
	if root == "" {
		var err error
		if root, err = ModuleRoot(ctx); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "skein-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// The proxy runs as its own uid and must read its binary and the
	// discovery file here.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	bin, err := prepareBinaries(ctx, root, dir, log)
	if err != nil {
		return nil, err
	}
	n, err := netns.New(ctx, log)
	if err != nil {
		return nil, fmt.Errorf("creating the test network: %w", err)
	}
	defer n.Close()
	tb, err := newTestbed(ctx, n, dir, bin, log)
	defer tb.close()
	if err != nil {
		return nil, fmt.Errorf("setting up the testbed: %w", err)
	}
	tb.proxyEnv = cfg.ProxyEnv
	if tb.peers, err = installPeers(ctx, cfg.selectedPeers(), log); err != nil {
		return nil, err
	}
	if cfg.Turnaround {
		if err := installPerf(ctx, log); err != nil {
			return nil, err
		}
	}
	report := newReport(cfg, root)
	if report.Runs, err = runAll(ctx, tb, cfg, log); err != nil {
		return nil, err
	}
	report.Finished = time.Now().UTC()
	report.Summaries = summarize(report.Runs)
	return report, nil
}

// runAll runs the scenarios interleaved: for each repetition, protocol and
// rate, every scenario once, back to back.
func runAll(ctx context.Context, tb *testbed, cfg Config, log *slog.Logger) ([]MeasuredRun, error) {
	var runs []MeasuredRun
	for rep := 1; rep <= cfg.Repetitions; rep++ {
		for _, p := range cfg.selectedProtocols() {
			for _, rate := range cfg.loadRates() {
				for _, sc := range cfg.selectedScenarios() {
					log.Info("measuring", "repetition", rep, "protocol", p.Name, "rps", rateName(rate), "scenario", sc.Name)
					m, err := measure(ctx, tb, sc, p, rate, rep, cfg)
					if err != nil {
						return nil, fmt.Errorf("scenario %s, %s at %s rps, repetition %d: %w", sc.Name, p.Name, rateName(rate), rep, err)
					}
					runs = append(runs, MeasuredRun{Scenario: sc.Name, Protocol: p.Name, Rate: rate, Repetition: rep, Measurement: m})
				}
			}
		}
	}
	return runs, nil
}

// measure deploys a scenario, warms it up, and measures one run.
func measure(ctx context.Context, tb *testbed, sc Scenario, p Protocol, rate, rep int, cfg Config) (m Measurement, err error) {
	dep, err := sc.deploy(ctx, tb)
	defer func() {
		if dep == nil {
			return
		}
		// A fresh context: undo must finish even after a Ctrl-C.
		undoCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if undoErr := dep.undo(undoCtx); undoErr != nil && err == nil {
			err = undoErr
		}
	}()
	if err != nil {
		return m, err
	}
	target := tb.target(p)
	if dep.target != nil {
		target = dep.target(p)
	}
	if cfg.Warmup > 0 {
		if _, err := tb.runLoad(ctx, p, target, rate, cfg.SaturationConnections, cfg.Warmup); err != nil {
			return m, fmt.Errorf("warming up: %w", err)
		}
	}
	before, err := sidecarUsage(dep.sidecars)
	if err != nil {
		return m, err
	}
	// Profiles and traces stop a second short of the run, so that they
	// end before the load does.
	watchSeconds := max(1, int(cfg.Duration.Seconds())-1)
	waitProfiles := func() error { return nil }
	if cfg.ProfileDir != "" {
		prefix := fmt.Sprintf("%s-%s-%s-rep%d", sc.Name, p.Name, rateName(rate), rep)
		waitProfiles = profileSidecars(ctx, dep.sidecars, watchSeconds, cfg.ProfileDir, prefix)
	}
	waitTrace := func() ([]Turnaround, error) { return nil, nil }
	if cfg.Turnaround && rate > 0 {
		waitTrace = traceTurnarounds(ctx, dep.sidecars, watchSeconds, tb.dir)
	}
	load, err := tb.runLoad(ctx, p, target, rate, cfg.SaturationConnections, cfg.Duration)
	if profileErr := waitProfiles(); err == nil {
		err = profileErr
	}
	turnarounds, traceErr := waitTrace()
	if err == nil {
		err = traceErr
	}
	if err != nil {
		return m, err
	}
	after, err := sidecarUsage(dep.sidecars)
	if err != nil {
		return m, err
	}
	m = Measurement{Requests: load.Requests, Errors: load.Errors, RPS: load.RPS, Latency: load.Latency}
	for i, s := range dep.sidecars {
		m.Proxies = append(m.Proxies, ProxyCost{
			Role:             s.role,
			CPUPer1k:         cpuPer1k(after[i].CPU-before[i].CPU, load.Requests),
			PeakRSSMB:        float64(after[i].PeakRSS) / (1 << 20),
			ReadsPerRequest:  perRequest(after[i].Reads-before[i].Reads, load.Requests),
			WritesPerRequest: perRequest(after[i].Writes-before[i].Writes, load.Requests),
		})
		if turnarounds != nil {
			m.Proxies[i].Turnaround = &turnarounds[i]
		}
	}
	return m, nil
}

// sidecarUsage reads every sidecar's usage, failing if one has exited: a
// proxy that crashed mid-run makes the run's figures meaningless.
func sidecarUsage(sidecars []sidecar) ([]usage, error) {
	var out []usage
	for _, s := range sidecars {
		if s.proc.exited() {
			return nil, fmt.Errorf("%s proxy exited during the run:\n%s", s.role, s.proc.tail(20))
		}
		u, err := readTreeUsage(s.proc.pid())
		if err != nil {
			return nil, fmt.Errorf("%s proxy: %w", s.role, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// cpuPer1k is CPU time in milliseconds per 1,000 requests.
func cpuPer1k(cpu time.Duration, requests int) float64 {
	if requests == 0 {
		return 0
	}
	return float64(cpu) / float64(time.Millisecond) * 1000 / float64(requests)
}

// rateName is a rate as reports print it: "max" for saturation.
func rateName(rate int) string {
	if rate == 0 {
		return "max"
	}
	return strconv.Itoa(rate)
}

func perRequest(n int64, requests int) float64 {
	if requests == 0 {
		return 0
	}
	return float64(n) / float64(requests)
}
