package balance

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
)

// fakeClock is a manual clock for single-goroutine tests.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

// newTestBalancer returns a Balancer on a fake clock with a seeded rand.
func newTestBalancer(t *testing.T, opts Options, addrs ...netip.AddrPort) (*Balancer, *fakeClock) {
	t.Helper()
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	opts.Now = clock.Now
	opts.Rand = rand.New(rand.NewPCG(1, 2)).Uint64
	b := New(opts)
	if addrs != nil {
		b.Update(endpoints(addrs...))
	}
	return b, clock
}

func endpoints(addrs ...netip.AddrPort) []discovery.Endpoint {
	eps := make([]discovery.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = discovery.Endpoint{Addr: a}
	}
	return eps
}

// testAddrs returns n distinct endpoint addresses.
func testAddrs(n int) []netip.AddrPort {
	out := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = netip.MustParseAddrPort(fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1))
	}
	return out
}

// outcome is how a simulated endpoint answers.
type outcome struct {
	latency time.Duration
	failed  bool
}

// serve runs one sequential request: Pick, let the endpoint's latency pass
// on the fake clock, Done. It returns the address picked.
func serve(t *testing.T, b *Balancer, clock *fakeClock, answer func(netip.AddrPort) outcome, avoid ...netip.AddrPort) netip.AddrPort {
	t.Helper()
	h := mustPick(t, b, avoid...)
	addr := h.Endpoint().Addr
	o := answer(addr)
	clock.Advance(o.latency)
	h.Done(o.failed)
	return addr
}

func mustPick(t *testing.T, b *Balancer, avoid ...netip.AddrPort) *Handle {
	t.Helper()
	h, err := b.Pick(context.Background(), avoid...)
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	return h
}

// constant answers every request alike.
func constant(latency time.Duration) func(netip.AddrPort) outcome {
	return func(netip.AddrPort) outcome { return outcome{latency: latency} }
}

// statusOf returns addr's entry in b.Snapshot().
func statusOf(t *testing.T, b *Balancer, addr netip.AddrPort) EndpointStatus {
	t.Helper()
	for _, s := range b.Snapshot() {
		if s.Addr == addr {
			return s
		}
	}
	t.Fatalf("%v is not in the snapshot", addr)
	return EndpointStatus{}
}
