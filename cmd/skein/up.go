package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/demo"
	"github.com/skeinmesh/skein/internal/mesh"
)

// detachedEnv marks the background child of `skein up -d`.
const detachedEnv = "SKEIN_UP_DETACHED"

func newUpCommand() *cobra.Command {
	var manifests, stateDir string
	var detach bool
	cmd := &cobra.Command{
		Use:   "up [-f PATH]",
		Short: "Run a whole mesh on this machine from manifests",
		Long: `Runs the controller, Prometheus, and for every Workload that many replicas,
each in a network namespace of its own with skein-init's rules and a
skein-proxy with its own identity. Every Service gets a virtual IP and the
name NAME.NAMESPACE.svc.cluster.local in every replica. Edits to the
manifests are applied while it runs. Runs in the foreground until
interrupted, then removes everything it made; with -d it returns once the
mesh is ready and leaves it running (skein down stops it). Without -f it
runs the bundled demo (as skein demo does). Needs root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if manifests == "" {
				// No manifests: the bundled demo.
				path, err := writeDemoManifests(stateDir)
				if err != nil {
					return err
				}
				manifests = path
			}
			return runUp(cmd.Context(), cmd.ErrOrStderr(), manifests, stateDir, detach)
		},
	}
	cmd.Flags().StringVarP(&manifests, "file", "f", "", "a YAML file or directory of manifests (Service, Workload)")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "return once the mesh is ready and leave it running")
	cmd.Flags().StringVar(&stateDir, "state-dir", mesh.DefaultStateDir, "where the running mesh keeps its files")
	return cmd
}

func runUp(ctx context.Context, stderr io.Writer, manifests, stateDir string, detach bool) error {
	if detach && os.Getenv(detachedEnv) == "" {
		return upDetached(ctx, stderr, manifests, stateDir)
	}
	bin, err := binDir()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return mesh.Up(ctx, mesh.Config{Manifests: manifests, StateDir: stateDir, BinDir: bin, Log: log}, func() {
		fmt.Fprintf(stderr, "mesh is up; try: skein stat -n NAMESPACE, skein logs NAME; skein down (or Ctrl-C) stops it\n")
	})
}

// upDetached runs `skein up` again in the background, in a session of its
// own, and waits until the mesh is ready or the child gives up.
func upDetached(ctx context.Context, stderr io.Writer, manifests, stateDir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(stateDir), 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(filepath.Dir(stateDir), "up.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	child := exec.Command(self, "up", "-f", manifests, "--state-dir", stateDir, "-d")
	child.Env = append(os.Environ(), detachedEnv+"=1")
	child.Stdout, child.Stderr = logFile, logFile
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		return fmt.Errorf("starting the mesh in the background: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	for {
		// Ready only counts once the child itself supervises the state dir.
		if pid, ok := mesh.Running(stateDir); ok && pid == child.Process.Pid && mesh.Ready(stateDir) {
			fmt.Fprintf(stderr, "mesh is up (pid %d, log %s); skein down stops it\n", pid, logPath)
			return nil
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("the mesh did not come up (%v):\n%s", err, strings.TrimSpace(string(out)))
		case <-ctx.Done():
			child.Process.Signal(syscall.SIGTERM)
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// binDir is where the skein binaries are: beside this one.
func binDir() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	self, err = filepath.EvalSymlinks(self)
	if err != nil {
		return "", err
	}
	return filepath.Dir(self), nil
}

func newDownCommand() *cobra.Command {
	var stateDir string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the local mesh and remove everything it made",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			err := mesh.Down(ctx, stateDir, log)
			if errors.Is(err, mesh.ErrNotRunning) {
				fmt.Fprintln(cmd.OutOrStdout(), "no mesh was running; anything a crashed one left is removed")
				return nil
			}
			if err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "mesh stopped and removed")
			}
			return err
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", mesh.DefaultStateDir, "where the running mesh keeps its files")
	return cmd
}

func newLogsCommand() *cobra.Command {
	var stateDir string
	var proxy, follow bool
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Show a replica's output (NAME: emoji-0), a workload's (emoji), controller or prometheus",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return showLogs(cmd.Context(), cmd.OutOrStdout(), filepath.Join(stateDir, mesh.LogsDir), args[0], proxy, follow)
		},
	}
	cmd.Flags().BoolVar(&proxy, "proxy", false, "show the replica's proxy instead of its application")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	cmd.Flags().StringVar(&stateDir, "state-dir", mesh.DefaultStateDir, "where the running mesh keeps its files")
	return cmd
}

// showLogs prints the log files of name: one replica's, or every replica's
// of a workload (each line prefixed with the replica).
func showLogs(ctx context.Context, w io.Writer, dir, name string, proxy, follow bool) error {
	suffix := ".log"
	if proxy {
		suffix = ".proxy.log"
	}
	files, _ := filepath.Glob(filepath.Join(dir, name+suffix))
	if len(files) == 0 {
		files, _ = filepath.Glob(filepath.Join(dir, name+"-[0-9]*"+suffix))
		if !proxy {
			files = slicesDeleteProxyLogs(files)
		}
	}
	if len(files) == 0 {
		return fmt.Errorf("no logs for %q in %s (is the mesh running? names are replicas like web-0, workloads like web, controller, prometheus)", name, dir)
	}
	offsets := make([]int64, len(files))
	for {
		for i, f := range files {
			prefix := ""
			if len(files) > 1 {
				prefix = "[" + strings.TrimSuffix(filepath.Base(f), suffix) + "] "
			}
			n, err := printFrom(w, f, offsets[i], prefix)
			if err != nil {
				return err
			}
			offsets[i] += n
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func slicesDeleteProxyLogs(files []string) []string {
	var out []string
	for _, f := range files {
		if !strings.HasSuffix(f, ".proxy.log") {
			out = append(out, f)
		}
	}
	return out
}

// printFrom prints path from offset on, whole lines only, each with prefix,
// and returns how many bytes it consumed.
func printFrom(w io.Writer, path string, offset int64, prefix string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return 0, err
	}
	end := strings.LastIndexByte(string(b), '\n') + 1
	for _, line := range strings.SplitAfter(string(b[:end]), "\n") {
		if line != "" {
			fmt.Fprint(w, prefix+line)
		}
	}
	return int64(end), nil
}

func newDemoCommand() *cobra.Command {
	var stateDir string
	var detach bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the bundled demo application in a local mesh",
		Long: `Runs skein up with the demo: a web front end, two gRPC back ends (emoji, 3
replicas; voting, 2 replicas) and a traffic generator in namespace demo.
Votes for doughnut always fail (sold out): 10% of /api/vote answers are 500s,
so every screen shows successes, failures and latencies.
Then: skein stat -n demo, skein edges -n demo, skein logs web.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := writeDemoManifests(stateDir)
			if err != nil {
				return err
			}
			return runUp(cmd.Context(), cmd.ErrOrStderr(), path, stateDir, detach)
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "return once the mesh is ready and leave it running")
	cmd.Flags().StringVar(&stateDir, "state-dir", mesh.DefaultStateDir, "where the running mesh keeps its files")
	return cmd
}

// writeDemoManifests puts the bundled demo's manifests beside the state
// directory (not in it: skein up makes that afresh).
func writeDemoManifests(stateDir string) (string, error) {
	dir := filepath.Join(filepath.Dir(stateDir), "demo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, demo.ManifestFile)
	return path, os.WriteFile(path, demo.Manifests, 0o644)
}
