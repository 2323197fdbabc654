package proxy

import (
	"net/netip"
	"testing"
)

func TestConnLimiterCapsPerSourceAndInTotal(t *testing.T) {
	a, b, c := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("198.18.0.4")
	l := newConnLimiter(5, 3)
	for i := range 3 {
		if r := l.acquire(a); r != "" {
			t.Fatalf("connection %d from a refused (%s) under both caps", i+1, r)
		}
	}
	if r := l.acquire(a); r != refusedMaxConnectionsPerSource {
		t.Errorf("4th connection from a: got %q, want %q", r, refusedMaxConnectionsPerSource)
	}
	// Another source still gets in, up to the listener's cap.
	for i := range 2 {
		if r := l.acquire(b); r != "" {
			t.Fatalf("connection %d from b refused (%s)", i+1, r)
		}
	}
	if r := l.acquire(c); r != refusedMaxConnections {
		t.Errorf("6th connection in all: got %q, want %q", r, refusedMaxConnections)
	}
	// A refusal takes no place: after one release, exactly one more fits.
	l.release(a)
	if r := l.acquire(c); r != "" {
		t.Errorf("after a release, c refused (%s)", r)
	}
	if r := l.acquire(a); r != refusedMaxConnections {
		t.Errorf("listener full again: got %q, want %q", r, refusedMaxConnections)
	}
	if l.open != 5 || l.bySource[a] != 2 || l.bySource[b] != 2 || l.bySource[c] != 1 {
		t.Errorf("counts open=%d by source %v, want 5 with a=2 b=2 c=1", l.open, l.bySource)
	}
}

func TestConnLimiterForgetsSourcesWithNoConnection(t *testing.T) {
	l := newConnLimiter(10, 2)
	for i := range 10 {
		src := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
		if r := l.acquire(src); r != "" {
			t.Fatal(r)
		}
		l.release(src)
	}
	if l.open != 0 || len(l.bySource) != 0 {
		t.Errorf("after every connection closed: open=%d, %d sources remembered; want 0 and 0", l.open, len(l.bySource))
	}
}

func TestConnLimiterWithoutPerSourceCap(t *testing.T) {
	src := netip.MustParseAddr("127.0.0.1")
	l := newConnLimiter(3, 0)
	for range 3 {
		if r := l.acquire(src); r != "" {
			t.Fatal(r)
		}
	}
	if r := l.acquire(src); r != refusedMaxConnections {
		t.Errorf("got %q, want %q", r, refusedMaxConnections)
	}
	if len(l.bySource) != 0 {
		t.Errorf("per-source counts kept without a per-source cap: %v", l.bySource)
	}
}
