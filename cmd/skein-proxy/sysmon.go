package main

import (
	"os"
	"strings"
)

// awakeSysmon is the GODEBUG setting that keeps Go's sysmon thread out of
// its deep sleep: a schedtrace period so long (2^31-1 ms, 24.8 days) that
// it never prints in practice (a host up longer than that gets one SCHED
// line on stderr at start and one every 24.8 days).
//
// Why: when every P is idle, sysmon sleeps until the next timer, and the
// first system call after that wakes it and sets it polling every 20 µs
// again ("as a bet" that it will have a P to retake, proc.go). A proxy at
// a thousand requests a second is idle between every two of them, so each
// request paid a futex wake-up of sysmon and a string of 20 µs nanosleeps,
// each a thread switch: in skein-bench (mTLS pair, 1,000 rps, one core
// per proxy) sysmon's switches were 17% of a proxy's CPU samples (perf),
// and keeping it awake took CPU per 1,000 requests from 172/174 to
// 126/130 ms (HTTP/1.1) and from 254/240 to 156/144 ms (gRPC). Awake, it
// backs off to one wake-up every 10 ms once nothing needs it.
const awakeSysmon = "schedtrace=2147483647"

// sysmonGODEBUG returns the GODEBUG value that keeps sysmon awake, from
// the current one, or "" when that already says schedtrace (the user's
// choice, or a process that was re-executed with it).
func sysmonGODEBUG(current string) string {
	for _, f := range strings.Split(current, ",") {
		if strings.HasPrefix(strings.TrimSpace(f), "schedtrace=") {
			return ""
		}
	}
	if current == "" {
		return awakeSysmon
	}
	return current + "," + awakeSysmon
}

// envWith returns env with name set to value.
func envWith(env []string, name, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return append(out, name+"="+value)
}

// keepSysmonAwake re-executes the proxy with sysmon kept awake (GODEBUG
// is only read at start for this setting), unless it already is. It
// returns only when it did not re-execute.
func keepSysmonAwake() error {
	godebug := sysmonGODEBUG(os.Getenv("GODEBUG"))
	if godebug == "" {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return execSelf(exe, os.Args, envWith(os.Environ(), "GODEBUG", godebug))
}
