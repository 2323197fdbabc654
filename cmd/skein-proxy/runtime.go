package main

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
)

// processSettings are the settings of the proxy's process rather than of
// the proxy.
type processSettings struct {
	logLevel slog.Level
	// cores is Go's GOMAXPROCS. A sidecar at the rates it sees does not
	// need two cores at once, and with one the scheduler stops waking a
	// second thread for every hand-over between goroutines: in skein-bench
	// (2 cores, mTLS pair, 1,000 rps) about a fifth less CPU per request
	// and exactly 2 writes per request instead of 2.4 (the rest were
	// wake-ups of the other thread). linkerd2-proxy also runs on one core
	// by default.
	cores int
	// gcPercent is Go's GOGC. The proxy's live heap is 1.5-2 MB under
	// load, so Go's default (100: the heap doubles before a collection,
	// with a 4 MB floor) makes its heap about twice what it holds; 50
	// takes 1.8 MB off the resident size for more collections: no CPU
	// difference beyond noise at 1,000 rps, 3-22% more CPU per request
	// at saturation (skein-bench, docs/performance.md).
	gcPercent int
}

func defaultProcessSettings() processSettings {
	return processSettings{logLevel: slog.LevelInfo, cores: 1, gcPercent: 50}
}

// tuneRuntime applies cores and gcPercent, unless Go's own environment
// variables (GOMAXPROCS, GOGC) say otherwise.
func (ps processSettings) tuneRuntime() {
	if os.Getenv("GOMAXPROCS") == "" && ps.cores > 0 {
		runtime.GOMAXPROCS(ps.cores)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(ps.gcPercent)
	}
}

// effectiveGCPercent is the GC percent in force, for the log.
func (ps processSettings) effectiveGCPercent() string {
	if v := os.Getenv("GOGC"); v != "" {
		return v
	}
	return strconv.Itoa(ps.gcPercent)
}
