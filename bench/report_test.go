package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// sampleRuns are two repetitions of direct and skein at one rate.
func sampleRuns() []MeasuredRun {
	run := func(scenario string, rep int, p50, p99 float64, proxies ...ProxyCost) MeasuredRun {
		return MeasuredRun{Scenario: scenario, Protocol: "http1", Rate: 100, Repetition: rep, Measurement: Measurement{
			Requests: 1000, RPS: 100, Latency: Latency{P50: p50, P90: p50 * 1.5, P99: p99, Max: p99 * 2}, Proxies: proxies,
		}}
	}
	return []MeasuredRun{
		run("direct", 1, 0.2, 0.4),
		run("skein", 1, 0.6, 1.0, ProxyCost{Role: "client", CPUPer1k: 40, PeakRSSMB: 16}, ProxyCost{Role: "server", CPUPer1k: 30, PeakRSSMB: 17}),
		run("direct", 2, 0.4, 0.6),
		run("skein", 2, 1.0, 1.4, ProxyCost{Role: "client", CPUPer1k: 60, PeakRSSMB: 18}, ProxyCost{Role: "server", CPUPer1k: 50, PeakRSSMB: 19}),
	}
}

func TestSummarizeTakesMediansAndLatencyAddedOverTheFirstScenario(t *testing.T) {
	got := summarize(sampleRuns())
	if len(got) != 2 {
		t.Fatalf("got %d summaries, want 2: %+v", len(got), got)
	}
	direct, skein := got[0], got[1]
	if direct.Scenario != "direct" || direct.Added != nil || direct.Repetitions != 2 {
		t.Errorf("baseline summary = %+v", direct)
	}
	if !near(direct.Latency.P50, 0.3) || !near(skein.Latency.P50, 0.8) {
		t.Errorf("p50 medians = %v, %v, want 0.3, 0.8", direct.Latency.P50, skein.Latency.P50)
	}
	if skein.Added == nil || !near(skein.Added.P50, 0.5) || !near(skein.Added.P99, 0.7) {
		t.Errorf("added latency = %+v, want p50 0.5, p99 0.7", skein.Added)
	}
	if len(skein.Proxies) != 2 || skein.Proxies[0].Role != "client" || skein.Proxies[0].CPUPer1k != 50 || skein.Proxies[1].PeakRSSMB != 18 {
		t.Errorf("proxy medians = %+v", skein.Proxies)
	}
}

func sampleReport() *Report {
	r := &Report{
		Started:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Settings: Settings{Repetitions: 2, Duration: "10s", Scenarios: []string{"direct", "skein"}},
		Runs:     sampleRuns(),
	}
	r.Summaries = summarize(r.Runs)
	return r
}

func TestTableShowsEveryScenarioAndProxy(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"cpu:client", "rss:server", "+0.500", "+0.700", "direct", "skein", "50.0", "18.0"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestChartIsWellFormedSVGWithABarPerPercentile(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteChart(&b); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&b)
	bars := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v", err)
		}
		if el, ok := tok.(xml.StartElement); ok && el.Name.Local == "rect" {
			for _, a := range el.Attr {
				if a.Name.Local == "width" && a.Value == "12" {
					bars++
				}
			}
		}
	}
	// 3 legend squares, then 2 scenarios x 3 percentiles.
	if bars != 3+6 {
		t.Errorf("found %d 12-wide rects, want 9 (legend and bars)", bars)
	}
}

func TestWriteFilesWritesLatestAndTimestampedCopies(t *testing.T) {
	dir := t.TempDir()
	written, err := sampleReport().WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 4 {
		t.Errorf("wrote %v, want 4 files", written)
	}
	for _, name := range []string{"latest.json", "20260102T030405Z.json", "latest.svg", "20260102T030405Z.svg"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "latest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Summaries) != 2 || back.Summaries[1].Added == nil {
		t.Errorf("read back %+v", back.Summaries)
	}
}

func TestNiceAxisCoversTheValue(t *testing.T) {
	for _, v := range []float64{0, 0.07, 0.45, 1, 1.5, 6.5, 13.7, 250} {
		top, step := niceAxis(v)
		if top < v || step <= 0 || top/step > 10 {
			t.Errorf("niceAxis(%v) = %v, %v", v, top, step)
		}
	}
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no rates nor saturation", func(c *Config) { c.Rates, c.Saturate = nil, false }, "rates"},
		{"saturation without connections", func(c *Config) { c.SaturationConnections = 0 }, "saturation connections"},
		{"zero rate", func(c *Config) { c.Rates = []int{0} }, "rates"},
		{"short duration", func(c *Config) { c.Duration = time.Millisecond }, "duration"},
		{"no repetitions", func(c *Config) { c.Repetitions = 0 }, "repetitions"},
		{"unknown protocol", func(c *Config) { c.Protocols = []string{"smtp"} }, "protocols"},
		{"unknown scenario", func(c *Config) { c.Scenarios = []string{"envoy"} }, "scenarios"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.want)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
	if err := ShortConfig().Validate(); err != nil {
		t.Errorf("short config: %v", err)
	}
}
