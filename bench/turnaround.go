package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A proxy's turnaround is how long it holds bytes it was sent: from the
// end of a read system call that brought bytes, the first since its last
// write, to the start of its next write. At a fixed rate over one
// connection, every request crosses a proxy in two turnarounds (the
// request on its way in, the response on its way out), and a turnaround
// is all the proxy adds to the request's latency besides its system
// calls: its own code, the Go scheduler's hand-overs, waiting for a core.
// A proxy's CPU time cannot say which of its work is on the request's way
// and which comes after; fortio's latency percentiles move by tens of
// microseconds from run to run. Turnarounds, thousands per run, resolve a
// few.
//
// They are taken from the kernel's syscall tracepoints with perf record
// (Debian's linux-perf, installed when missing), which costs every system
// call of the traced processes a little: compare turnarounds with
// turnarounds, and a traced run's other figures only with traced runs.

// Turnaround is a proxy's turnarounds in one run.
type Turnaround struct {
	Count int     `json:"count"`
	P50US float64 `json:"p50_us"`
	P90US float64 `json:"p90_us"`
}

// Read- and write-like system calls on amd64, the only architecture the
// bench traces (syscall numbers differ between architectures).
var (
	readSyscalls  = []int{0, 19, 45, 47, 299} // read, readv, recvfrom, recvmsg, recvmmsg
	writeSyscalls = []int{1, 20, 44, 46, 307} // write, writev, sendto, sendmsg, sendmmsg
)

// traceTurnarounds starts perf record on every sidecar's process tree for
// seconds and returns once it records; wait blocks until the trace is
// taken and returns each sidecar's turnarounds, in the sidecars' order.
//
// perf sets its events up before it starts its command, and the first time
// on a machine that can take longer than a short run's load: the window
// then began after the load had nearly ended (66 turnarounds for 200 in
// the smoke run's first traced scenario, in CI). So the command says when
// it starts, and the caller starts its load after that.
func traceTurnarounds(ctx context.Context, sidecars []sidecar, seconds int, dir string) (wait func() ([]Turnaround, error)) {
	if len(sidecars) == 0 {
		return func() ([]Turnaround, error) { return nil, nil }
	}
	owner := map[int]int{} // traced pid -> index in sidecars
	var pids []string
	for i, s := range sidecars {
		for _, pid := range append([]int{s.proc.pid()}, descendants(s.proc.pid())...) {
			owner[pid] = i
			pids = append(pids, strconv.Itoa(pid))
		}
	}
	data := filepath.Join(dir, "turnaround.perf")
	cmd := exec.CommandContext(ctx, "perf", "record", "-q", "-e", "raw_syscalls:sys_enter", "-e", "raw_syscalls:sys_exit",
		"-p", strings.Join(pids, ","), "-o", data, "--", "sh", "-c", `echo recording && exec sleep "$0"`, strconv.Itoa(seconds))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, startErr := cmd.StdoutPipe()
	if startErr == nil {
		startErr = cmd.Start()
	}
	started := startErr == nil
	if started {
		// EOF when perf ended without starting its command; Wait says why.
		_, startErr = bufio.NewReader(stdout).ReadString('\n')
	}
	return func() ([]Turnaround, error) {
		defer os.Remove(data)
		if startErr != nil {
			if started {
				_ = cmd.Wait()
			}
			return nil, fmt.Errorf("tracing system calls: perf record did not start: %w: %s", startErr, strings.TrimSpace(stderr.String()))
		}
		if err := cmd.Wait(); err != nil {
			return nil, fmt.Errorf("tracing system calls: perf record: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		gaps, err := readTrace(ctx, data, owner)
		if err != nil {
			return nil, err
		}
		out := make([]Turnaround, len(sidecars))
		for i := range sidecars {
			out[i] = summarizeTurnarounds(gaps[i])
		}
		return out, nil
	}
}

// readTrace runs perf script over a recorded trace and returns the
// turnarounds of each owner.
func readTrace(ctx context.Context, data string, owner map[int]int) (map[int][]time.Duration, error) {
	cmd := exec.CommandContext(ctx, "perf", "script", "-i", data, "-F", "pid,tid,time,event,trace")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("reading the system call trace: %w", err)
	}
	gaps, parseErr := turnarounds(out, owner)
	if parseErr != nil {
		// Stop perf script before waiting for it: it may be blocked on a
		// pipe nobody reads any more.
		_ = cmd.Process.Kill()
	}
	if err := cmd.Wait(); parseErr == nil && err != nil {
		return nil, fmt.Errorf("reading the system call trace: perf script: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return gaps, parseErr
}

// turnarounds reads perf script's lines (fields pid,tid,time,event,trace
// of raw_syscalls:sys_enter and sys_exit) and returns, for each owner of
// the traced pids, its turnarounds. A process tree is one owner: a proxy's
// read and its write may be on different threads, or (nginx) processes.
// Lines of other pids and lines perf adds of its own are skipped.
func turnarounds(r io.Reader, owner map[int]int) (map[int][]time.Duration, error) {
	gaps := map[int][]time.Duration{}
	readAt := map[int]time.Duration{} // owner -> end of its first unanswered read
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		ev, ok, err := parseSyscallEvent(sc.Text())
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		o, traced := owner[ev.pid]
		if !traced {
			continue
		}
		switch {
		case !ev.enter && ev.ret > 0 && slices.Contains(readSyscalls, ev.nr):
			if _, waiting := readAt[o]; !waiting {
				readAt[o] = ev.at
			}
		case ev.enter && slices.Contains(writeSyscalls, ev.nr):
			if at, waiting := readAt[o]; waiting {
				gaps[o] = append(gaps[o], ev.at-at)
				delete(readAt, o)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the system call trace: %w", err)
	}
	return gaps, nil
}

// syscallEvent is one line of perf script: a system call's entry or exit.
type syscallEvent struct {
	pid   int
	at    time.Duration // since perf's clock's zero
	enter bool
	nr    int
	ret   int64 // exits only
}

// parseSyscallEvent parses a line such as
//
//	17982/17987 44168.303125: raw_syscalls:sys_enter: NR 0 (6, 167da6a9a800, 800, 0, 0, 0)
//	17982/17987 44168.303127:  raw_syscalls:sys_exit: NR 0 = 37
//
// ok is false for lines of other events; err is set for a line of these
// events that does not parse.
func parseSyscallEvent(line string) (ev syscallEvent, ok bool, err error) {
	f := strings.Fields(line)
	if len(f) < 5 || f[3] != "NR" {
		return ev, false, nil
	}
	switch f[2] {
	case "raw_syscalls:sys_enter:":
		ev.enter = true
	case "raw_syscalls:sys_exit:":
		if len(f) < 7 || f[5] != "=" {
			return ev, false, fmt.Errorf("system call trace: no return value in %q", line)
		}
		if ev.ret, err = strconv.ParseInt(f[6], 10, 64); err != nil {
			return ev, false, fmt.Errorf("system call trace: return value in %q: %w", line, err)
		}
	default:
		return ev, false, nil
	}
	pid, _, _ := strings.Cut(f[0], "/")
	if ev.pid, err = strconv.Atoi(pid); err != nil {
		return ev, false, fmt.Errorf("system call trace: pid in %q: %w", line, err)
	}
	if ev.nr, err = strconv.Atoi(f[4]); err != nil {
		return ev, false, fmt.Errorf("system call trace: syscall number in %q: %w", line, err)
	}
	secs, err := strconv.ParseFloat(strings.TrimSuffix(f[1], ":"), 64)
	if err != nil {
		return ev, false, fmt.Errorf("system call trace: time in %q: %w", line, err)
	}
	// perf prints microseconds: rounding to them undoes the float's error.
	ev.at = time.Duration(secs*1e6+0.5) * time.Microsecond
	return ev, true, nil
}

// summarizeTurnarounds gives the count and percentiles of gaps.
func summarizeTurnarounds(gaps []time.Duration) Turnaround {
	us := make([]float64, len(gaps))
	for i, g := range gaps {
		us[i] = float64(g) / float64(time.Microsecond)
	}
	slices.Sort(us)
	return Turnaround{Count: len(us), P50US: percentile(us, 50), P90US: percentile(us, 90)}
}

// installPerf makes sure perf is on PATH, installing Debian's linux-perf
// when it is not, and that this machine is one whose system calls the
// bench knows.
func installPerf(ctx context.Context, log *slog.Logger) error {
	if runtime.GOARCH != "amd64" {
		return errors.New("turnarounds: the bench knows the system call numbers of amd64 only")
	}
	if _, err := exec.LookPath("perf"); err == nil {
		return nil
	}
	log.Info("installing perf with apt-get", "package", "linux-perf")
	return aptInstall(ctx, "linux-perf")
}
