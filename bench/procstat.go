package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// usage is what a process has consumed so far.
type usage struct {
	CPU     time.Duration // user + system time of all its threads
	PeakRSS int64         // bytes; the high-water mark of resident memory
	// Reads and Writes count read- and write-like system calls
	// (syscr/syscw of /proc/PID/io).
	Reads, Writes int64
}

// userHZ is the unit of /proc/PID/stat's times. The kernel reports them in
// USER_HZ, which is 100 on every architecture Linux's ABI promises.
const userHZ = 100

// readUsage reads a live process's CPU time and peak RSS from /proc.
func readUsage(pid int) (usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, fmt.Errorf("reading CPU time: %w", err)
	}
	cpu, err := parseCPUTime(string(stat))
	if err != nil {
		return usage{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, fmt.Errorf("reading peak RSS: %w", err)
	}
	rss, err := parsePeakRSS(string(status))
	if err != nil {
		return usage{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	u := usage{CPU: cpu, PeakRSS: rss}
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		u.Reads, u.Writes = parseSyscalls(string(io))
	}
	return u, nil
}

// parseSyscalls returns syscr and syscw from /proc/PID/io; zero when
// missing.
func parseSyscalls(io string) (reads, writes int64) {
	for line := range strings.Lines(io) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes
}

// parseCPUTime returns utime+stime from a /proc/PID/stat line. The command
// name (field 2) is in parentheses and may hold spaces and parentheses, so
// fields are counted from the last ')'.
func parseCPUTime(stat string) (time.Duration, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("no command name in %q", stat)
	}
	// After ")": field 3 (state) is rest[0], so utime (14) and stime (15)
	// are rest[11] and rest[12].
	rest := strings.Fields(stat[end+1:])
	if len(rest) < 13 {
		return 0, fmt.Errorf("only %d fields after the command name", len(rest))
	}
	var ticks int64
	for _, f := range rest[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("CPU time %q: %w", f, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// parsePeakRSS returns VmHWM from /proc/PID/status, in bytes.
func parsePeakRSS(status string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		value, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("VmHWM: want \"N kB\", got %q", strings.TrimSpace(value))
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmHWM: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no VmHWM line")
}

// readTreeUsage is readUsage summed over pid and all its descendants, for
// peers that work in child processes (nginx's workers): CPU times add up,
// and so do the peak RSS of the processes (an upper bound of the tree's
// peak, as the processes may not peak together).
func readTreeUsage(pid int) (usage, error) {
	total, err := readUsage(pid)
	if err != nil {
		return usage{}, err
	}
	for _, child := range descendants(pid) {
		u, err := readUsage(child)
		if err != nil {
			continue // exited since the scan: its time is gone with it
		}
		total.CPU += u.CPU
		total.PeakRSS += u.PeakRSS
		total.Reads += u.Reads
		total.Writes += u.Writes
	}
	return total, nil
}

// descendants lists the live processes below pid, found through the
// parent PIDs in /proc/*/stat.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		if ppid, err := parseParentPID(string(stat)); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		next := children[queue[0]]
		queue = append(queue[1:], next...)
		out = append(out, next...)
	}
	return out
}

// parseParentPID returns field 4 (ppid) of a /proc/PID/stat line.
func parseParentPID(stat string) (int, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("no command name in %q", stat)
	}
	rest := strings.Fields(stat[end+1:])
	if len(rest) < 2 {
		return 0, fmt.Errorf("only %d fields after the command name", len(rest))
	}
	return strconv.Atoi(rest[1])
}
