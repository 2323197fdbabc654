// Command skein-bench measures the data plane's cost: latency added by
// Skein's client and server proxies (with and without mTLS), and by one
// hop of HAProxy, nginx and Caddy, over a direct connection, each proxy's
// CPU and memory, and saturation throughput, with fortio over HTTP/1.1 and
// gRPC. It needs root (network namespaces, iptables) and installs the
// peers' Debian packages when they are missing.
//
//	go run ./bench/cmd/skein-bench                 # the full run, about 12 minutes
//	go run ./bench/cmd/skein-bench -short          # smoke run: 1 x 2 s at 100 rps and saturation
//	go run ./bench/cmd/skein-bench -rates 500 -duration 30s -reps 5 -protocols grpc
//	go run ./bench/cmd/skein-bench -rates= -saturate -scenarios direct,skein,haproxy
//
// It prints a table of medians and writes bench/results/latest.json (with a
// timestamped copy) and latest.svg, a chart of p50/p90/p99.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/skeinmesh/skein/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "skein-bench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cfg, resultsDir, err := parseFlags(args)
	if err != nil {
		return err
	}
	report, err := bench.Run(ctx, cfg)
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted; the namespaces and processes it started are gone")
	}
	if err != nil {
		return err
	}
	if err := report.WriteTable(os.Stdout); err != nil {
		return err
	}
	if resultsDir == "" {
		resultsDir = filepath.Join(cfg.ModuleRoot, "bench", "results")
	}
	written, err := report.WriteFiles(resultsDir)
	if err != nil {
		return err
	}
	fmt.Println("wrote", strings.Join(written, ", "))
	return nil
}

func parseFlags(args []string) (bench.Config, string, error) {
	fs := flag.NewFlagSet("skein-bench", flag.ContinueOnError)
	short := fs.Bool("short", false, "smoke run: 1 repetition of 2s at 100 rps and saturation (overrides -rates, -duration, -reps, -saturate)")
	def := bench.DefaultConfig()
	rates := fs.String("rates", joinInts(def.Rates), "comma-separated request rates (requests per second)")
	duration := fs.Duration("duration", def.Duration, "length of each measured run")
	warmup := fs.Duration("warmup", def.Warmup, "unmeasured run before each measured one")
	reps := fs.Int("reps", def.Repetitions, "repetitions of every scenario, protocol and rate")
	saturate := fs.Bool("saturate", def.Saturate, "also measure saturation: fortio -qps 0 over -saturate-conns connections (-rates= -saturate: saturation only)")
	saturateConns := fs.Int("saturate-conns", def.SaturationConnections, "connections of the saturation runs")
	protocols := fs.String("protocols", "", "comma-separated protocols to measure (default all: "+names(bench.Protocols, func(p bench.Protocol) string { return p.Name })+")")
	scenarios := fs.String("scenarios", "", "comma-separated scenarios to run (default: "+bench.ScenarioNames(false)+"; only when named: "+bench.ScenarioNames(true)+"); the first is the baseline")
	profile := fs.String("profile", "", "directory for a CPU profile of every proxy in every measured run (go tool pprof)")
	turnaround := fs.Bool("turnaround", false, "trace every proxy's system calls (perf) in the fixed-rate runs and report its turnaround: from a read that brought bytes to its next write")
	proxyEnv := fs.String("proxy-env", "", "comma-separated KEY=VALUE added to skein-proxy's environment, for experiments (e.g. GOMAXPROCS=1)")
	out := fs.String("out", "", "results directory (default bench/results in Skein's module)")
	verbose := fs.Bool("v", false, "log every step")
	if err := fs.Parse(args); err != nil {
		return def, "", err
	}
	if fs.NArg() > 0 {
		return def, "", fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg := def
	if *short {
		cfg = bench.ShortConfig()
	} else {
		var err error
		if cfg.Rates, err = parseInts(*rates); err != nil {
			return cfg, "", fmt.Errorf("-rates: %w", err)
		}
		cfg.Duration, cfg.Warmup, cfg.Repetitions = *duration, *warmup, *reps
		cfg.Saturate, cfg.SaturationConnections = *saturate, *saturateConns
	}
	cfg.Protocols, cfg.Scenarios = splitList(*protocols), splitList(*scenarios)
	cfg.ProfileDir = *profile
	cfg.ProxyEnv = splitList(*proxyEnv)
	cfg.Turnaround = *turnaround
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// Binaries are built, and results written, in Skein's module whatever
	// the working directory within it.
	root, err := bench.ModuleRoot(context.Background())
	if err != nil {
		return cfg, "", err
	}
	cfg.ModuleRoot = root
	return cfg, *out, cfg.Validate()
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func names[T any](items []T, name func(T) string) string {
	s := make([]string, len(items))
	for i, it := range items {
		s[i] = name(it)
	}
	return strings.Join(s, ", ")
}
