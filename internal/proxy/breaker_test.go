package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/outbound"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/routes"
)

// The breaker and failure-aware balancing over real sockets: net/http
// backends, the proxy's engines and its outbound stack (metrics, errors,
// resolve, balance, connect), with two test-only layers where the route
// and retry layers go: one that sets the request's policy and rule as the
// route layer does, one that re-sends a 5xx as a retry layer does.

const breakerDst = "web.test.svc.cluster.local:8080"

// replica is a loopback backend that counts what it got, by path.
type replica struct {
	addr netip.AddrPort
	mu   sync.Mutex
	got  map[string][]time.Time // arrival times by path
}

// newReplica serves answer on loopback; answer writes the response.
func newReplica(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *replica {
	t.Helper()
	rep := &replica{got: map[string][]time.Time{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep.mu.Lock()
		rep.got[r.URL.Path] = append(rep.got[r.URL.Path], time.Now())
		rep.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	rep.addr = netip.MustParseAddrPort(srv.Listener.Addr().String())
	return rep
}

func (r *replica) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got[path])
}

func (r *replica) times(path string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got[path])
}

func answerStatus(status int) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }
}

// policyLayer sets the request's policy and rule as the route layer does:
// the rule of the route whose path prefix matches, else the defaults.
func policyLayer(p *routes.Policy, prefixes map[string]int) stack.Layer {
	return func(next stack.Handler) stack.Handler {
		return stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
			req.Info.Policy, req.Info.Rule = p, &p.Defaults
			for prefix, i := range prefixes {
				if len(req.Path) >= len(prefix) && req.Path[:len(prefix)] == prefix {
					req.Info.Route = p.Routes[i].RouteName()
					req.Info.Rule = &p.Routes[i].Rules[0]
				}
			}
			return next.Serve(ctx, req)
		})
	}
}

// retryLayer re-sends a bodiless request answered with a 5xx, up to limit
// more times: a minimal stand-in for the retry layer, so that every
// attempt passes the balance layer as a request.
func retryLayer(limit int) stack.Layer {
	return func(next stack.Handler) stack.Handler {
		return stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
			for attempt := 0; ; attempt++ {
				try := *req
				resp, err := next.Serve(ctx, &try)
				req.Info = try.Info
				if attempt == limit || err != nil || resp.Status < 500 || req.Body != stack.NoBody {
					return resp, err
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// breakerProxy serves the outbound stack on loopback with the test layers
// in the route and retry layers' place, for breakerDst over replicas. It
// returns the proxy's address and its metrics.
func breakerProxy(t *testing.T, replicas []*replica, testLayers ...stack.Layer) (string, *metrics.Registry) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var eps []discovery.Endpoint
	for _, r := range replicas {
		eps = append(eps, discovery.Endpoint{Addr: r.addr})
	}
	out := outbound.New(ctx, staticResolver{breakerDst: eps}, balance.DefaultOptions(), nil, quietLog())
	reg, _ := metrics.New(nil)
	if err := out.CountBreakerChanges(reg.Registerer()); err != nil {
		t.Fatal(err)
	}
	cfg := stackConfig{metrics: reg, tunnelIdleTimeout: time.Hour, engines: testEngines(), log: quietLog()}
	connect := out.Connect(cfg.engines)
	layers := outboundLayers(out, connect, cfg)
	// After metrics and errors: where route, timeout and retry go.
	layers = slices.Insert(layers, 2, testLayers...)
	addr := serveEngines(t, stack.Build(connect, layers...))
	return addr.String(), reg
}

// getVia sends one GET for path through the proxy and returns the status and
// the skein-proxy-error header.
func getVia(t *testing.T, client *http.Client, proxy, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+proxy+path, nil)
	req.Host = breakerDst
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("skein-proxy-error")
}

// counter is the value of a counter series with exactly these labels.
func counter(t *testing.T, reg *metrics.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestBreakerEjectsFailingReplicaThenProbesOnce: one of three replicas
// answers every request with a 500 (after 30 ms). After 3 failures in a row (the
// Service's breaker-consecutive) it is ejected: nothing reaches it for
// the penalty (1 s, + up to 10% jitter), then exactly one probe does, whose
// failure ejects it again for twice as long.
func TestBreakerEjectsFailingReplicaThenProbesOnce(t *testing.T) {
	bad := newReplica(t, func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(30 * time.Millisecond)
		w.WriteHeader(500)
	})
	good := []*replica{newReplica(t, answerStatus(200)), newReplica(t, answerStatus(200))}
	policy := &routes.Policy{Service: "test/web", Port: 8080,
		Defaults: routes.Rule{Breaker: &routes.Breaker{Consecutive: 3, MinPenalty: time.Second, MaxPenalty: 10 * time.Second}}}
	proxy, reg := breakerProxy(t, []*replica{bad, good[0], good[1]}, policyLayer(policy, nil))
	client := newClient(t)
	ejections := func(reason string) float64 {
		return counter(t, reg, "balancer_ejections_total", map[string]string{
			"authority": breakerDst, "target_addr": bad.addr.String(), "route_name": "", "reason": reason})
	}

	for sent := 0; ejections("consecutive") == 0; sent++ {
		if sent == 5000 {
			t.Fatalf("not ejected after %d requests; the failing replica got %d", sent, bad.count("/"))
		}
		getVia(t, client, proxy, "/")
	}
	if n := bad.count("/"); n != 3 {
		t.Fatalf("ejected after the failing replica got %d requests, want 3", n)
	}
	ejectedAt := bad.times("/")[2]

	// Until the probe's failure ejects it again, every other request goes
	// to the healthy ones; four clients at once, so that a second probe
	// would find the half-open replica while the first (30 ms) is out.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ejections("probe") == 0 && !t.Failed() {
				if time.Since(ejectedAt) > 20*time.Second {
					t.Errorf("no probe within 20 s of the ejection")
					return
				}
				req, _ := http.NewRequest("GET", "http://"+proxy+"/", nil)
				req.Host = breakerDst
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("GET: %v", err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	times := bad.times("/")
	if len(times) != 4 {
		t.Fatalf("the failing replica got %d requests by the probe's failure, want 3 + 1 probe", len(times))
	}
	if wait := times[3].Sub(ejectedAt); wait < time.Second {
		t.Errorf("the probe came %v after the ejection, want at least the 1 s penalty", wait)
	}
	// Re-ejected for 2 s: the next 300 requests (well under 2 s) miss it.
	for range 300 {
		getVia(t, client, proxy, "/")
	}
	if n := bad.count("/"); n != 4 {
		t.Errorf("the failing replica got %d requests after its probe failed, want none", n-4)
	}
	t.Logf("probe %v after the ejection; the healthy replicas got %d and %d", times[3].Sub(ejectedAt), good[0].count("/"), good[1].count("/"))
}

// TestAllEndpointsEjectedIsAnswered: with the cap at 100%, a lone failing
// endpoint is ejected, and the proxy answers 503 saying so rather than
// sending to it (or saying there are no endpoints).
func TestAllEndpointsEjectedIsAnswered(t *testing.T) {
	bad := newReplica(t, answerStatus(500))
	policy := &routes.Policy{Service: "test/web", Port: 8080,
		Defaults: routes.Rule{Breaker: &routes.Breaker{Consecutive: 2, MaxEjectedPercent: 100, MinPenalty: time.Minute}}}
	proxy, _ := breakerProxy(t, []*replica{bad}, policyLayer(policy, nil))
	client := newClient(t)
	for range 2 {
		if status, _ := getVia(t, client, proxy, "/"); status != 500 {
			t.Fatalf("status %d before the ejection, want the backend's 500", status)
		}
	}
	status, why := getVia(t, client, proxy, "/")
	if status != 503 || why != "all endpoints ejected" {
		t.Errorf("with every endpoint ejected: %d, skein-proxy-error %q; want 503, \"all endpoints ejected\"", status, why)
	}
	if n := bad.count("/"); n != 2 {
		t.Errorf("the ejected endpoint got %d requests, want 2", n)
	}
}

// TestRouteBreakerDoesNotCostReplicaOtherRoutes: route A (/a, its own
// breaker) fails on replica 1, which serves route B (/b) well. A's breaker
// ejects replica 1 for A; B keeps sending replica 1 its share, because A's
// failures reach neither the Service-wide breaker nor the estimates B's
// requests are balanced by.
func TestRouteBreakerDoesNotCostReplicaOtherRoutes(t *testing.T) {
	answer := func(failA bool) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			if failA && r.URL.Path == "/a" {
				w.WriteHeader(500)
				return
			}
			time.Sleep(2 * time.Millisecond)
			w.WriteHeader(200)
		}
	}
	replicas := []*replica{newReplica(t, answer(false)), newReplica(t, answer(true)), newReplica(t, answer(false))}
	serviceBreaker := &routes.Breaker{Consecutive: 3}
	policy := &routes.Policy{Service: "test/web", Port: 8080,
		Defaults: routes.Rule{Breaker: serviceBreaker},
		Routes: []routes.Route{
			{Kind: "HTTPRoute", Namespace: "test", Name: "a", Rules: []routes.Rule{{Breaker: &routes.Breaker{Consecutive: 2, MinPenalty: time.Minute}}}},
			{Kind: "HTTPRoute", Namespace: "test", Name: "b", Rules: []routes.Rule{{Breaker: serviceBreaker}}},
		}}
	proxy, reg := breakerProxy(t, replicas, policyLayer(policy, map[string]int{"/a": 0, "/b": 1}))
	client := newClient(t)

	const rounds = 600
	for range rounds {
		getVia(t, client, proxy, "/a")
		getVia(t, client, proxy, "/b")
	}
	shareB := float64(replicas[1].count("/b")) / rounds
	t.Logf("route B's shares: %d/%d/%d; replica 1 got %d of route A's requests",
		replicas[0].count("/b"), replicas[1].count("/b"), replicas[2].count("/b"), replicas[1].count("/a"))
	if shareB < 0.2 {
		t.Errorf("replica 1 got %.0f%% of route B's requests while route A failed there, want its share (at least 20%%)", 100*shareB)
	}
	if n := replicas[1].count("/a"); n != 2 {
		t.Errorf("replica 1 got %d of route A's requests, want 2 (then A's breaker ejects it for a minute)", n)
	}
	routeEjections := counter(t, reg, "balancer_ejections_total", map[string]string{
		"authority": breakerDst, "target_addr": replicas[1].addr.String(), "route_name": "test/a", "reason": "consecutive"})
	serviceEjections := counter(t, reg, "balancer_ejections_total", map[string]string{"route_name": ""})
	if routeEjections != 1 || serviceEjections != 0 {
		t.Errorf("ejections: %v for route test/a, %v Service-wide; want 1 and 0", routeEjections, serviceEjections)
	}
}

// TestFastFailingReplicaGetsLittleTraffic is linkerd2 #11669: breakers
// off, one replica answers 500 at once while the two healthy ones take
// 20-50 ms. Failing fast must not make it look fast: with retries off and
// on (a failed attempt re-sent up to twice, each attempt balanced anew)
// it gets well under its third.
func TestFastFailingReplicaGetsLittleTraffic(t *testing.T) {
	for _, retries := range []int{0, 2} {
		t.Run(map[int]string{0: "retries off", 2: "retries on"}[retries], func(t *testing.T) {
			var n atomic.Int64
			slow := func(w http.ResponseWriter, _ *http.Request) {
				time.Sleep(20*time.Millisecond + time.Duration(n.Add(1)%4)*10*time.Millisecond)
				w.WriteHeader(200)
			}
			bad := newReplica(t, answerStatus(500))
			replicas := []*replica{bad, newReplica(t, slow), newReplica(t, slow)}
			policy := &routes.Policy{Service: "test/web", Port: 8080, Defaults: routes.Rule{Breaker: &routes.Breaker{Consecutive: 0}}}
			layers := []stack.Layer{policyLayer(policy, nil)}
			if retries > 0 {
				layers = append(layers, retryLayer(retries))
			}
			proxy, reg := breakerProxy(t, replicas, layers...)
			client := newClient(t)

			const clients, each = 8, 50
			var ok atomic.Int64
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					for range each {
						if status, _ := getVia(t, client, proxy, "/"); status == 200 {
							ok.Add(1)
						}
					}
				})
			}
			wg.Wait()
			attempts := bad.count("/") + replicas[1].count("/") + replicas[2].count("/")
			share := float64(bad.count("/")) / float64(attempts)
			t.Logf("the failing replica got %d of %d attempts (%.1f%%); %d of %d requests succeeded",
				bad.count("/"), attempts, 100*share, ok.Load(), clients*each)
			if share > 0.1 {
				t.Errorf("the fast-failing replica got %.1f%% of the attempts, want well under its third (at most 10%%)", 100*share)
			}
			if ejected := counter(t, reg, "balancer_ejections_total", nil); ejected != 0 {
				t.Errorf("%v ejections with the breaker off", ejected)
			}
		})
	}
}

// TestBreakerCountsListedGRPCCodeFromTrailers: a gRPC backend answers
// RESOURCE_EXHAUSTED (8) in its trailers, which is not a failure by
// default; the Service lists it (breaker-failure grpc:resource-exhausted),
// so two calls eject the lone endpoint (cap 100%) and the third is
// answered by the proxy: a trailers-only UNAVAILABLE saying why.
func TestBreakerCountsListedGRPCCodeFromTrailers(t *testing.T) {
	for _, listed := range []bool{false, true} {
		var calls atomic.Int64
		grpcHeader := stack.Header{{Name: "content-type", Value: "application/grpc"}}
		backend := serveEngines(t, stack.HandlerFunc(func(_ context.Context, req *stack.Request) (*stack.Response, error) {
			calls.Add(1)
			io.Copy(io.Discard, req.Body)
			req.Body.Close()
			trailers := stack.Header{{Name: "grpc-status", Value: "8"}, {Name: "grpc-message", Value: "quota"}}
			return &stack.Response{Status: 200, Header: grpcHeader, Body: stack.BytesBody([]byte("\x00\x00\x00\x00\x00"), trailers)}, nil
		}))
		breaker := &routes.Breaker{Consecutive: 2, MaxEjectedPercent: 100, MinPenalty: time.Minute}
		if listed {
			breaker.FailureGRPC = []int{8}
		}
		policy := &routes.Policy{Service: "test/web", Port: 8080, Defaults: routes.Rule{Breaker: breaker}}
		proxy, _ := breakerProxy(t, []*replica{{addr: backend}}, policyLayer(policy, nil))
		eng := testEngines()
		client := eng.For(2)(func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", proxy)
		})
		t.Cleanup(client.Close)
		call := func() (status, message string) {
			req := &stack.Request{Method: "POST", Scheme: "http", Authority: breakerDst, Path: "/quota.Quota/Take", ProtoMajor: 2,
				Header: grpcHeader, Body: stack.BytesBody([]byte("\x00\x00\x00\x00\x00"), nil)}
			resp, err := client.Serve(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if s := resp.Header.Get("grpc-status"); s != "" {
				return s, resp.Header.Get("grpc-message") // trailers-only
			}
			return resp.Body.Trailers().Get("grpc-status"), resp.Body.Trailers().Get("grpc-message")
		}
		for range 2 {
			if status, _ := call(); status != "8" {
				t.Fatalf("listed %v: grpc-status %s before any ejection, want the backend's 8", listed, status)
			}
		}
		status, message := call()
		switch {
		case listed && (status != "14" || message != "all endpoints ejected"):
			t.Errorf("RESOURCE_EXHAUSTED listed: third call got grpc-status %s %q, want 14 \"all endpoints ejected\"", status, message)
		case !listed && status != "8":
			t.Errorf("RESOURCE_EXHAUSTED not listed: third call got grpc-status %s %q, want the backend's 8", status, message)
		}
		if want := map[bool]int64{true: 2, false: 3}[listed]; calls.Load() != want {
			t.Errorf("listed %v: the backend got %d calls, want %d", listed, calls.Load(), want)
		}
	}
}
