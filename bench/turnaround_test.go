package bench

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The trace is perf script's output for two Skein proxies at 1,000 rps
// (17982 the server's, 17950 the client's), with a few lines added at the
// end: a read on a second thread, a second read before the write, a pid
// nobody traced, and a write with no read before it.
func TestTurnaroundsFromATrace(t *testing.T) {
	f, err := os.Open("testdata/perf-script-syscalls.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := turnarounds(f, map[int]int{17950: 0, 17982: 1})
	if err != nil {
		t.Fatal(err)
	}
	us := func(n ...int) []time.Duration {
		var out []time.Duration
		for _, v := range n {
			out = append(out, time.Duration(v)*time.Microsecond)
		}
		return out
	}
	want := map[int][]time.Duration{
		// 37 bytes in, EAGAIN, 83 out: 24 µs; 75 in, 34 out: 16 µs; then
		// 10 bytes on another thread and 5 more, written 12 µs after the first.
		1: us(24, 16, 12),
		// 34 in, EAGAIN, 75 out: 21 µs; 83 in, 37 out: 20 µs.
		0: us(21, 20),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("turnarounds = %v, want %v", got, want)
	}
	// Nearest rank: of 12, 16 and 24 µs, the p50 is the 2nd, the p90 the 3rd.
	if s := summarizeTurnarounds(got[1]); s != (Turnaround{Count: 3, P50US: 16, P90US: 24}) {
		t.Errorf("summary of %v = %+v", got[1], s)
	}
}

func TestTurnaroundsRejectAMalformedLine(t *testing.T) {
	for _, line := range []string{
		"17982/17987 44168.303127:  raw_syscalls:sys_exit: NR 0 = x",
		"17982/17987 44168.303127:  raw_syscalls:sys_exit: NR 0",
		"17982/17987 44168.3031x7: raw_syscalls:sys_enter: NR 1 (6, 1, 22, 0, 0, 0)",
		"pid/17987 44168.303127: raw_syscalls:sys_enter: NR 1 (6, 1, 22, 0, 0, 0)",
	} {
		if _, err := turnarounds(strings.NewReader(line+"\n"), map[int]int{17982: 0}); err == nil {
			t.Errorf("%q: no error", line)
		}
	}
}
