package ratelimit

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// policies is an authz.Lookup whose policies a test changes.
type policies struct {
	mu  sync.Mutex
	in  map[uint16]*authz.Inbound
	err error
}

func (p *policies) set(in *authz.Inbound) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.in[in.Port] = in
}

func (p *policies) Inbound(_ context.Context, port uint16) (*authz.Inbound, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, p.err
	}
	if in, ok := p.in[port]; ok {
		return in, nil
	}
	return &authz.Inbound{Port: port, Default: authz.AllUnauthenticated}, nil
}

func (*policies) Watch(ctx context.Context, _ func()) { <-ctx.Done() }

var app = stack.HandlerFunc(func(context.Context, *stack.Request) (*stack.Response, error) {
	return &stack.Response{Status: 200, Body: stack.NoBody}, nil
})

func request(port uint16, identity, method, path string) *stack.Request {
	return &stack.Request{Method: method, Path: path, Body: stack.NoBody,
		Conn: &stack.ConnInfo{Direction: "inbound", ClientID: identity, OrigDst: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port)}}
}

// burst sends n requests at once and returns how many got through and the
// last refusal.
func burst(h stack.Handler, n int, req func() *stack.Request) (int, error) {
	through := 0
	var last error
	for range n {
		if _, err := h.Serve(context.Background(), req()); err != nil {
			last = err
			continue
		}
		through++
	}
	return through, last
}

func TestLayerFollowsThePolicy(t *testing.T) {
	p := &policies{in: make(map[uint16]*authz.Inbound)}
	reg, _ := metrics.New(nil)
	// The clock stands still: no bucket refills during the test.
	h := layerAt(p, reg, func() time.Time { return epoch })(app)
	webReq := func() *stack.Request { return request(8080, web, "GET", "/") }

	// No rate limit: nothing is refused.
	if n, err := burst(h, 50, webReq); n != 50 {
		t.Fatalf("without a limit %d of 50 got through (%v)", n, err)
	}
	// A limit: the burst gets through, then 429 naming Server and limit.
	p.set(&authz.Inbound{Port: 8080, Server: "demo/api", RateLimit: &authz.RateLimit{PerIdentity: 10}})
	n, err := burst(h, 50, webReq)
	const why = "rate limited by Server demo/api: identity limit of 10 requests per second"
	if n != Burst(10) || !errors.Is(err, stack.ErrRateLimited) || err.Error() != why {
		t.Errorf("at 10/s, %d of 50 at once got through and then %v; want %d and %q", n, err, Burst(10), why)
	}
	// Another port is not limited by this one's policy.
	if n, _ := burst(h, 20, func() *stack.Request { return request(9090, web, "GET", "/") }); n != 20 {
		t.Errorf("port 9090 without a limit let %d of 20 through", n)
	}
	// Probes of the port are never limited; meshed GETs of the path are.
	p.set(&authz.Inbound{Port: 8080, Server: "demo/api", ProbePaths: []string{"/ready"}, RateLimit: &authz.RateLimit{PerIdentity: 10}})
	if n, _ := burst(h, 20, func() *stack.Request { return request(8080, "", "GET", "/ready") }); n != 20 {
		t.Errorf("%d of 20 probes got through, want all", n)
	}
	if n, _ := burst(h, 20, func() *stack.Request { return request(8080, web, "GET", "/ready") }); n != 0 {
		t.Errorf("%d of 20 meshed GETs of the probe path got through, want none (web's bucket is empty)", n)
	}
	// The port passes to another Server: its buckets start afresh.
	p.set(&authz.Inbound{Port: 8080, Server: "demo/api-v2", RateLimit: &authz.RateLimit{PerIdentity: 10}})
	if n, _ := burst(h, 20, webReq); n != Burst(10) {
		t.Errorf("under a new Server %d got through, want a fresh burst of %d", n, Burst(10))
	}
}

func TestLayerFailsClosedWithoutAPolicy(t *testing.T) {
	p := &policies{in: make(map[uint16]*authz.Inbound), err: errors.New("no policy from the controller yet")}
	called := false
	h := Layer(p, nil)(stack.HandlerFunc(func(context.Context, *stack.Request) (*stack.Response, error) {
		called = true
		return &stack.Response{Status: 200, Body: stack.NoBody}, nil
	}))
	if _, err := h.Serve(context.Background(), request(8080, web, "GET", "/")); err == nil || called {
		t.Errorf("without a policy: err %v, application called %v; want an error and no call", err, called)
	}
}
