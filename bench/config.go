package bench

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// Config says what to measure. Start from DefaultConfig or ShortConfig.
type Config struct {
	// Rates are the fixed request rates (requests per second), each run
	// with one connection.
	Rates []int
	// Saturate adds, after the fixed rates, a run at the highest rate
	// SaturationConnections connections can carry (fortio -qps 0). Its
	// throughput is reported as a ratio to the baseline's. In the report
	// its rate is 0.
	Saturate              bool
	SaturationConnections int
	// Duration is how long each measured run lasts.
	Duration time.Duration
	// Warmup is an unmeasured run before each measured one, so that fresh
	// connections and cold caches do not land in the figures.
	Warmup time.Duration
	// Repetitions of every scenario, protocol and rate; the report gives
	// medians over them.
	Repetitions int
	// Protocols and Scenarios name entries of the Protocols and Scenarios
	// tables; empty means all.
	Protocols []string
	Scenarios []string
	// ProfileDir, when set, receives a CPU profile of every proxy for
	// every measured run (named scenario-protocol-rate-repN-role.pprof).
	// Profiling costs the proxies a little CPU of its own.
	ProfileDir string
	// Turnaround traces every proxy's system calls in the fixed-rate runs
	// and reports its turnarounds (see Turnaround). Tracing costs every
	// system call a little.
	Turnaround bool
	// ProxyEnv is added to skein-proxy's environment (KEY=VALUE), for
	// experiments such as GOMAXPROCS=1.
	ProxyEnv []string
	// ModuleRoot is the directory of Skein's go.mod, where the binaries are
	// built. Empty means the module of the current directory.
	ModuleRoot string
	// Log gets progress; nil means slog.Default().
	Log *slog.Logger
}

// DefaultConfig is the full measurement: 100 and 1,000 rps and
// saturation over 4 connections, 5 s runs, three repetitions. With the six
// scenarios and two protocols that is 108 measured runs, about 12 minutes
// on a 2-core machine.
func DefaultConfig() Config {
	return Config{
		Rates:                 []int{100, 1000},
		Saturate:              true,
		SaturationConnections: 4,
		Duration:              5 * time.Second,
		Warmup:                time.Second,
		Repetitions:           3,
	}
}

// ShortConfig is a smoke run: does every scenario work at all?
func ShortConfig() Config {
	return Config{
		Rates:                 []int{100},
		Saturate:              true,
		SaturationConnections: 4,
		Duration:              2 * time.Second,
		Warmup:                500 * time.Millisecond,
		Repetitions:           1,
	}
}

// Validate names the first field that makes no sense.
func (c Config) Validate() error {
	var errs []error
	if len(c.Rates) == 0 && !c.Saturate {
		errs = append(errs, errors.New("rates: need at least one, or saturation"))
	}
	if c.Saturate && c.SaturationConnections < 1 {
		errs = append(errs, fmt.Errorf("saturation connections: want at least 1, got %d", c.SaturationConnections))
	}
	for _, r := range c.Rates {
		if r <= 0 {
			errs = append(errs, fmt.Errorf("rates: %d is not a positive rate", r))
		}
	}
	if c.Duration < time.Second {
		errs = append(errs, fmt.Errorf("duration: %s is too short to measure, want at least 1s", c.Duration))
	}
	if c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("warmup: must not be negative, got %s", c.Warmup))
	}
	if c.Repetitions < 1 {
		errs = append(errs, fmt.Errorf("repetitions: want at least 1, got %d", c.Repetitions))
	}
	for _, name := range c.Protocols {
		if !slices.ContainsFunc(Protocols, func(p Protocol) bool { return p.Name == name }) {
			errs = append(errs, fmt.Errorf("protocols: unknown protocol %q", name))
		}
	}
	for _, name := range c.Scenarios {
		if !slices.ContainsFunc(Scenarios, func(s Scenario) bool { return s.Name == name }) {
			errs = append(errs, fmt.Errorf("scenarios: unknown scenario %q", name))
		}
	}
	return errors.Join(errs...)
}

// loadRates are the rates every scenario runs at, saturation (0) last.
func (c Config) loadRates() []int {
	rates := slices.Clone(c.Rates)
	if c.Saturate {
		rates = append(rates, 0)
	}
	return rates
}

// selectedProtocols returns the Protocols entries c names, in table order.
func (c Config) selectedProtocols() []Protocol {
	var out []Protocol
	for _, p := range Protocols {
		if len(c.Protocols) == 0 || slices.Contains(c.Protocols, p.Name) {
			out = append(out, p)
		}
	}
	return out
}

// selectedScenarios returns the Scenarios entries c names, in table order.
func (c Config) selectedScenarios() []Scenario {
	var out []Scenario
	for _, s := range Scenarios {
		if len(c.Scenarios) == 0 && !s.OnRequest || slices.Contains(c.Scenarios, s.Name) {
			out = append(out, s)
		}
	}
	return out
}

// selectedPeers returns the programs of the peer scenarios c names.
func (c Config) selectedPeers() []string {
	var out []string
	for _, s := range c.selectedScenarios() {
		if s.Peer != "" && !slices.Contains(out, s.Peer) {
			out = append(out, s.Peer)
		}
	}
	return out
}
