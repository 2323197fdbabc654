package netns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// recordDir holds one file per live Network, named by its ID.
const recordDir = "/run/skein/netns"

// Owner identifies a process across PID reuse: a recycled PID with another
// start time is a different process. It records who created a Network (and
// who supervises a local mesh).
type Owner struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"` // clock ticks since boot, /proc/PID/stat field 22
}

// CurrentOwner identifies this process.
func CurrentOwner() Owner { return OwnerOf(os.Getpid()) }

// OwnerOf identifies the running process pid.
func OwnerOf(pid int) Owner {
	start, _ := processStartTime(pid)
	return Owner{PID: pid, StartTime: start}
}

// Alive reports whether the process o names is still running. A zombie
// (killed, not yet reaped by its parent) is not.
func (o Owner) Alive() bool {
	start, state, err := processStat(o.PID)
	return err == nil && start == o.StartTime && state != "Z" && state != "X"
}

func processStartTime(pid int) (uint64, error) {
	start, _, err := processStat(pid)
	return start, err
}

// processStat reads a process's state and start time from /proc/PID/stat.
func processStat(pid int) (start uint64, state string, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", err
	}
	// The command name (field 2) may contain spaces; fields after it do not.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// Fields are counted from 1 in proc(5), and fields 1 and 2 are cut off:
	// state (3) is at 0 and starttime (22) at 19.
	const stateField, startTimeField = 0, 19
	if len(fields) <= startTimeField {
		return 0, "", fmt.Errorf("short /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(fields[startTimeField], 10, 64)
	return start, fields[stateField], err
}

func writeOwnerRecord(id string, o Owner) error {
	if err := os.MkdirAll(recordDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", recordDir, err)
	}
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	path := filepath.Join(recordDir, id)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("writing ownership record: %w", err)
	}
	return nil
}

func removeOwnerRecord(id string) error {
	err := os.Remove(filepath.Join(recordDir, id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing ownership record: %w", err)
	}
	return nil
}

// CleanStale removes every network whose creator is no longer running:
// kills the processes in its namespaces, deletes the namespaces and the
// record. Networks of live processes (other test binaries, a running
// `skein up`) are left alone.
func CleanStale(ctx context.Context, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	entries, err := os.ReadDir(recordDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing %s: %w", recordDir, err)
	}
	var errs []error
	for _, e := range entries {
		id := e.Name()
		data, err := os.ReadFile(filepath.Join(recordDir, id))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var o Owner
		if err := json.Unmarshal(data, &o); err != nil {
			errs = append(errs, fmt.Errorf("reading ownership record %s: %w", id, err))
			continue
		}
		if o.Alive() {
			continue
		}
		log.Info("removing stale network", "network", id, "owner_pid", o.PID)
		if err := removeNetwork(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeNetwork deletes every namespace named skein-ID-* and the record.
func removeNetwork(ctx context.Context, id string) error {
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listing namespaces: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), namespacePrefix+id+"-") {
			errs = append(errs, removeNamespace(ctx, e.Name()))
		}
	}
	errs = append(errs, removeOwnerRecord(id))
	return errors.Join(errs...)
}

// removeNamespace kills the processes in ns, then deletes it and its
// /etc/netns files. A namespace that no longer exists is not an error.
func removeNamespace(ctx context.Context, ns string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); errors.Is(err, fs.ErrNotExist) {
		return os.RemoveAll(filepath.Join("/etc/netns", ns))
	}
	// A process left inside would keep the namespace (and its addresses)
	// alive after `ip netns del` removed its name.
	out, err := run(ctx, "", "ip", "netns", "pids", ns)
	if err != nil {
		return fmt.Errorf("listing processes in %s: %w", ns, err)
	}
	for _, field := range strings.Fields(out) {
		// Never this process: its threads may visit the namespace (Enter).
		if pid, err := strconv.Atoi(field); err == nil && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL) // already gone is fine
		}
	}
	if _, err := run(ctx, "", "ip", "netns", "del", ns); err != nil {
		return fmt.Errorf("deleting namespace: %w", err)
	}
	return os.RemoveAll(filepath.Join("/etc/netns", ns))
}
