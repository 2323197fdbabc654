// Command skein-cp-bench measures the control plane at scale: one service
// with 5,000 endpoints in a manifest directory, skein-controller serving
// it, 1,000 destination streams (grpc-go over TLS, one connection each, as
// proxies hold them), then endpoint churn. It reports the time from a
// manifest's rename to every watcher having the change, the controller's
// CPU and memory, and the bytes each watcher receives per change. It runs
// on loopback and needs no root.
//
//	go run ./bench/cmd/skein-cp-bench                      # one to two minutes
//	go run ./bench/cmd/skein-cp-bench -endpoints 500 -watchers 100 -changes 5
//
// It prints the figures and writes bench/results/controlplane-latest.json
// (and a timestamped copy).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/skeinmesh/skein/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "skein-cp-bench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cfg := bench.DefaultCPConfig()
	fs := flag.NewFlagSet("skein-cp-bench", flag.ContinueOnError)
	fs.IntVar(&cfg.Endpoints, "endpoints", cfg.Endpoints, "endpoints of the one service")
	fs.IntVar(&cfg.Watchers, "watchers", cfg.Watchers, "destination streams, one connection each")
	fs.IntVar(&cfg.Changes, "changes", cfg.Changes, "manifest edits, one endpoint added or removed each")
	fs.DurationVar(&cfg.Pause, "pause", cfg.Pause, "pause between changes")
	fs.StringVar(&cfg.ProfileDir, "profile", "", "directory for a 10 s CPU profile of the controller during the churn (controlplane-controller.pprof)")
	out := fs.String("out", "", "results directory (default bench/results in Skein's module)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	root, err := bench.ModuleRoot(ctx)
	if err != nil {
		return err
	}
	cfg.ModuleRoot = root
	report, err := bench.RunControlPlane(ctx, cfg)
	if err != nil {
		return err
	}
	if err := report.WriteTable(os.Stdout); err != nil {
		return err
	}
	dir := *out
	if dir == "" {
		dir = filepath.Join(root, "bench", "results")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	data, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	stamp := report.Started.Format("20060102T150405Z")
	for _, name := range []string{"controlplane-latest.json", "controlplane-" + stamp + ".json"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fmt.Errorf("writing results: %w", err)
		}
		fmt.Println("wrote", path)
	}
	return nil
}
