package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is everything one benchmark measured; it is what
// bench/results/*.json hold.
type Report struct {
	Started   time.Time     `json:"started"`
	Finished  time.Time     `json:"finished"`
	Machine   Machine       `json:"machine"`
	Settings  Settings      `json:"settings"`
	Runs      []MeasuredRun `json:"runs"`      // every measured run, in order
	Summaries []Summary     `json:"summaries"` // medians over repetitions
}

// Machine describes where the figures were measured.
type Machine struct {
	CPUs          int    `json:"cpus"`
	CPUModel      string `json:"cpu_model"`
	Kernel        string `json:"kernel"`
	GoVersion     string `json:"go_version"`
	FortioVersion string `json:"fortio_version"`
	Revision      string `json:"skein_revision,omitempty"` // git HEAD, if known
}

// Settings are the Config values the figures depend on.
type Settings struct {
	Rates []int `json:"rates"`
	// SaturationConnections is fortio's connection count in the
	// saturation runs (rate 0); 0 when there were none.
	SaturationConnections int      `json:"saturation_connections,omitempty"`
	Duration              string   `json:"duration"`
	Warmup                string   `json:"warmup"`
	Repetitions           int      `json:"repetitions"`
	Connections           int      `json:"connections"`
	Scenarios             []string `json:"scenarios"`
	Protocols             []string `json:"protocols"`
	ProxyEnv              []string `json:"proxy_env,omitempty"`
	// Turnaround: the fixed-rate runs were traced for turnarounds, which
	// costs the proxies a little.
	Turnaround bool `json:"turnaround,omitempty"`
}

// MeasuredRun is one measured run.
type MeasuredRun struct {
	Scenario string `json:"scenario"`
	Protocol string `json:"protocol"`
	// Rate is the fixed rate asked for, or 0 for saturation.
	Rate       int `json:"rate"`
	Repetition int `json:"repetition"`
	Measurement
}

// Measurement is what one run, or the median of several, measured.
type Measurement struct {
	Requests int         `json:"requests"`
	Errors   int         `json:"errors"`
	RPS      float64     `json:"rps"`
	Latency  Latency     `json:"latency"`
	Proxies  []ProxyCost `json:"proxies,omitempty"` // one per proxy process, in path order
}

// ProxyCost is what one proxy process used during a run.
type ProxyCost struct {
	Role      string  `json:"role"` // where it sits: client or server
	CPUPer1k  float64 `json:"cpu_ms_per_1k_requests"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// ReadsPerRequest and WritesPerRequest are the proxy's read- and
	// write-like system calls per request (/proc/PID/io): how well it
	// batches its I/O.
	ReadsPerRequest  float64 `json:"reads_per_request"`
	WritesPerRequest float64 `json:"writes_per_request"`
	// Turnaround is set in runs traced for it (Config.Turnaround).
	Turnaround *Turnaround `json:"turnaround,omitempty"`
}

// Summary is the median over repetitions of one scenario, protocol and rate.
type Summary struct {
	Scenario    string `json:"scenario"`
	Protocol    string `json:"protocol"`
	Rate        int    `json:"rate"`
	Repetitions int    `json:"repetitions"`
	Measurement
	// Added is the latency added over the baseline (the first scenario) at
	// the same protocol and rate: differences of the medians. Max is left
	// out: one outlier is not a cost. Nil for the baseline itself.
	Added *Latency `json:"added_latency,omitempty"`
	// ThroughputRatio is, in saturation runs, the throughput as a ratio to
	// the baseline's at the same protocol. Absent for the baseline and
	// for fixed rates.
	ThroughputRatio float64 `json:"throughput_ratio,omitempty"`
}

func newReport(cfg Config, moduleRoot string) *Report {
	r := &Report{
		Started: time.Now().UTC(),
		Machine: describeMachine(moduleRoot),
		Settings: Settings{
			Rates: cfg.Rates, Duration: cfg.Duration.String(), Warmup: cfg.Warmup.String(),
			Repetitions: cfg.Repetitions, Connections: 1,
		},
	}
	r.Settings.ProxyEnv = cfg.ProxyEnv
	r.Settings.Turnaround = cfg.Turnaround
	if cfg.Saturate {
		r.Settings.SaturationConnections = cfg.SaturationConnections
	}
	for _, s := range cfg.selectedScenarios() {
		r.Settings.Scenarios = append(r.Settings.Scenarios, s.Name)
	}
	for _, p := range cfg.selectedProtocols() {
		r.Settings.Protocols = append(r.Settings.Protocols, p.Name)
	}
	return r
}

func describeMachine(moduleRoot string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), FortioVersion: FortioVersion}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if out, err := runTool(context.Background(), moduleRoot, nil, "git", "rev-parse", "--short", "HEAD"); err == nil {
		m.Revision = strings.TrimSpace(out)
	}
	return m
}

// summarize groups runs by protocol, rate and scenario (in the order they
// first ran) and takes the median of every figure.
func summarize(runs []MeasuredRun) []Summary {
	type key struct {
		protocol, scenario string
		rate               int
	}
	var order []key
	groups := map[key][]Measurement{}
	for _, r := range runs {
		k := key{r.Protocol, r.Scenario, r.Rate}
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r.Measurement)
	}
	var out []Summary
	baseline := map[key]Measurement{} // protocol and rate, scenario left empty
	for _, k := range order {
		s := Summary{Scenario: k.scenario, Protocol: k.protocol, Rate: k.rate,
			Repetitions: len(groups[k]), Measurement: medianMeasurement(groups[k])}
		base := key{protocol: k.protocol, rate: k.rate}
		if b, ok := baseline[base]; !ok {
			baseline[base] = s.Measurement
		} else {
			s.Added = &Latency{P50: s.Latency.P50 - b.Latency.P50, P90: s.Latency.P90 - b.Latency.P90, P99: s.Latency.P99 - b.Latency.P99}
			if k.rate == 0 && b.RPS > 0 {
				s.ThroughputRatio = s.RPS / b.RPS
			}
		}
		out = append(out, s)
	}
	return out
}

// medianMeasurement takes the median of each figure on its own.
func medianMeasurement(ms []Measurement) Measurement {
	pick := func(f func(Measurement) float64) float64 {
		vals := make([]float64, len(ms))
		for i, m := range ms {
			vals[i] = f(m)
		}
		return median(vals)
	}
	out := Measurement{
		Requests: int(pick(func(m Measurement) float64 { return float64(m.Requests) })),
		Errors:   int(pick(func(m Measurement) float64 { return float64(m.Errors) })),
		RPS:      pick(func(m Measurement) float64 { return m.RPS }),
		Latency: Latency{
			P50: pick(func(m Measurement) float64 { return m.Latency.P50 }),
			P90: pick(func(m Measurement) float64 { return m.Latency.P90 }),
			P99: pick(func(m Measurement) float64 { return m.Latency.P99 }),
			Max: pick(func(m Measurement) float64 { return m.Latency.Max }),
		},
	}
	// Every run of a scenario has the same proxies in the same order.
	for i, p := range ms[0].Proxies {
		out.Proxies = append(out.Proxies, ProxyCost{
			Role:             p.Role,
			CPUPer1k:         pick(func(m Measurement) float64 { return m.Proxies[i].CPUPer1k }),
			PeakRSSMB:        pick(func(m Measurement) float64 { return m.Proxies[i].PeakRSSMB }),
			ReadsPerRequest:  pick(func(m Measurement) float64 { return m.Proxies[i].ReadsPerRequest }),
			WritesPerRequest: pick(func(m Measurement) float64 { return m.Proxies[i].WritesPerRequest }),
		})
		if ms[0].Proxies[i].Turnaround != nil {
			turn := func(f func(Turnaround) float64) float64 {
				return pick(func(m Measurement) float64 { return f(*m.Proxies[i].Turnaround) })
			}
			out.Proxies[i].Turnaround = &Turnaround{
				Count: int(turn(func(t Turnaround) float64 { return float64(t.Count) })),
				P50US: turn(func(t Turnaround) float64 { return t.P50US }),
				P90US: turn(func(t Turnaround) float64 { return t.P90US }),
			}
		}
	}
	return out
}

// median of vals; the mean of the middle two for an even count.
func median(vals []float64) float64 {
	if len(vals) == 0 {
		return 0
	}
	s := slices.Clone(vals)
	slices.SortFunc(s, cmp.Compare)
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return (s[mid-1] + s[mid]) / 2
}

// WriteFiles writes the report as dir/latest.json, a timestamped copy
// (dir/STAMP.json), and the latency chart as dir/latest.svg and
// dir/STAMP.svg. It returns the paths written.
func (r *Report) WriteFiles(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating results directory: %w", err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding results: %w", err)
	}
	data = append(data, '\n')
	var chart strings.Builder
	if err := r.WriteChart(&chart); err != nil {
		return nil, err
	}
	stamp := r.Started.Format("20060102T150405Z")
	var written []string
	for name, content := range map[string][]byte{
		"latest.json": data, stamp + ".json": data,
		"latest.svg": []byte(chart.String()), stamp + ".svg": []byte(chart.String()),
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, content, 0o644); err != nil {
			return written, fmt.Errorf("writing results: %w", err)
		}
		written = append(written, path)
	}
	slices.Sort(written)
	return written, nil
}
