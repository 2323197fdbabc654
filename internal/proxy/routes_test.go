package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/outbound"
	"github.com/skeinmesh/skein/internal/routes"
)

// These tests run the route and timeout layers in the whole outbound stack
// (resolve, balance and connect included) on loopback sockets, with a
// static policy standing in for the controller's and net/http or grpc-go
// servers as the backends.

const (
	webName = "web.test.svc.cluster.local:8080"
	v1Name  = "web-v1.test.svc.cluster.local:8080"
	v2Name  = "web-v2.test.svc.cluster.local:8080"
	v3Name  = "web-v3.test.svc.cluster.local:8080"
)

// staticLookup answers the outbound policy from a fixed map.
type staticLookup map[string]*routes.Policy

func (l staticLookup) Policy(_ context.Context, dst string) (*routes.Policy, error) {
	return l[dst], nil
}

// routedProxy serves the outbound stack with lookup over the destinations
// of resolver; it returns the proxy's address and its metrics.
func routedProxy(t *testing.T, resolver staticResolver, lookup routes.Lookup) (string, *metrics.Registry) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	out := outbound.New(ctx, resolver, balance.DefaultOptions(), nil, quietLog())
	reg, err := metrics.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveEngines(t, outboundStack(out, stackConfig{
		metrics: reg, tunnelIdleTimeout: time.Hour, engines: testEngines(), log: quietLog(), routes: lookup,
	}))
	return addr.String(), reg
}

func endpoint(addr string) []discovery.Endpoint {
	return []discovery.Endpoint{{Addr: netip.MustParseAddrPort(addr)}}
}

// recordingBackend is a net/http backend that remembers what it got.
type recordingBackend struct {
	addr string
	hits atomic.Int64
	mu   sync.Mutex
	last *http.Request
}

func newRecordingBackend(t *testing.T, name string) *recordingBackend {
	b := &recordingBackend{}
	b.addr = httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.mu.Lock()
		b.last = r.Clone(context.Background())
		b.mu.Unlock()
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Internal", "secret")
		io.WriteString(w, name)
	}))
	return b
}

func (b *recordingBackend) lastRequest() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

func webPolicy(rules ...routes.Rule) *routes.Policy {
	return &routes.Policy{Service: "test/web", Port: 8080, Routes: []routes.Route{
		{Kind: "HTTPRoute", Namespace: "test", Name: "web-split", Rules: rules},
	}}
}

func backendRef(authority, service string, weight uint32) routes.Backend {
	return routes.Backend{Authority: authority, Service: service, Port: 8080, Weight: weight}
}

// get sends a GET for path to the proxy as a request to authority and
// returns the answer with its body read.
func get(t *testing.T, client *http.Client, proxy, authority, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+proxy+path, nil)
	req.Host = authority
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func noRedirects() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

func TestRouteSplitsTrafficByWeightAndWeightZeroGetsNone(t *testing.T) {
	v1, v2, v3 := newRecordingBackend(t, "v1"), newRecordingBackend(t, "v2"), newRecordingBackend(t, "v3")
	resolver := staticResolver{webName: endpoint(v1.addr), v1Name: endpoint(v1.addr), v2Name: endpoint(v2.addr), v3Name: endpoint(v3.addr)}
	lookup := staticLookup{webName: webPolicy(routes.Rule{Backends: []routes.Backend{
		backendRef(v1Name, "test/web-v1", 90), backendRef(v2Name, "test/web-v2", 10), backendRef(v3Name, "test/web-v3", 0),
	}})}
	proxy, reg := routedProxy(t, resolver, lookup)
	client := noRedirects()
	const n = 2000
	for range n {
		if resp, _ := get(t, client, proxy, webName, "/", nil); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	share := float64(v2.hits.Load()) / n * 100
	t.Logf("v1 %d, v2 %d (%.1f%%), v3 %d of %d", v1.hits.Load(), v2.hits.Load(), share, v3.hits.Load(), n)
	if v1.hits.Load()+v2.hits.Load() != n {
		t.Errorf("backends got %d+%d requests of %d", v1.hits.Load(), v2.hits.Load(), n)
	}
	if share < 7 || share > 13 {
		t.Errorf("weight 10 of 100 got %.1f%% of the requests, want 10 ± 3", share)
	}
	if v3.hits.Load() != 0 {
		t.Errorf("weight 0 got %d requests", v3.hits.Load())
	}
	// route_name comes from the rule the route layer chose; authority is
	// the backend it resolved.
	got, err := testutil.GatherAndCount(reg.Gatherer(), "request_total")
	if err != nil || got != 2 {
		t.Errorf("request_total has %d series (%v), want one per backend", got, err)
	}
	want := fmt.Sprintf(`
# HELP request_total Total HTTP requests the proxy received.
# TYPE request_total counter
request_total{authority=%[1]q,client_id="",direction="outbound",dst_namespace="",dst_pod="",dst_service=%[1]q,dst_workload="",route_name="test/web-split",server_id="",target_addr=%[2]q,tls="no_identity"} %[3]d
request_total{authority=%[4]q,client_id="",direction="outbound",dst_namespace="",dst_pod="",dst_service=%[4]q,dst_workload="",route_name="test/web-split",server_id="",target_addr=%[5]q,tls="no_identity"} %[6]d
`, v1Name, v1.addr, v1.hits.Load(), v2Name, v2.addr, v2.hits.Load())
	if err := testutil.GatherAndCompare(reg.Gatherer(), strings.NewReader(want), "request_total"); err != nil {
		t.Error(err)
	}
}

func TestRouteMatchesHeadersModifiesThemAndRewrites(t *testing.T) {
	web, v2 := newRecordingBackend(t, "web"), newRecordingBackend(t, "v2")
	resolver := staticResolver{webName: endpoint(web.addr), v2Name: endpoint(v2.addr)}
	lookup := staticLookup{webName: webPolicy(
		routes.Rule{
			Matches: []routes.Match{{Path: &routes.PathMatch{Type: routes.PathPrefix, Value: "/api"},
				Headers: []routes.ValueMatch{{Name: "X-Canary", Value: "yes"}}}},
			RequestHeaders: &routes.HeaderModifier{
				Set:    []routes.Header{{Name: "X-Env", Value: "canary"}},
				Add:    []routes.Header{{Name: "X-Tag", Value: "added"}},
				Remove: []string{"X-Drop"},
			},
			ResponseHeaders: &routes.HeaderModifier{Set: []routes.Header{{Name: "X-Served-By", Value: "canary"}}, Remove: []string{"X-Internal"}},
			Rewrite:         &routes.Rewrite{Hostname: "rewritten.example", Path: &routes.PathRewrite{Prefix: "/v2", IsPrefix: true}},
			Backends:        []routes.Backend{backendRef(v2Name, "test/web-v2", 1)},
		},
		routes.Rule{
			Matches: []routes.Match{{Path: &routes.PathMatch{Type: routes.PathPrefix, Value: "/api"}}},
			Rewrite: &routes.Rewrite{Hostname: "other.example", Path: &routes.PathRewrite{Full: "/full"}},
		},
	)}
	proxy, _ := routedProxy(t, resolver, lookup)
	client := noRedirects()

	resp, body := get(t, client, proxy, webName, "/api/items?x=1", http.Header{
		"X-Canary": {"yes"}, "X-Env": {"prod"}, "X-Tag": {"client"}, "X-Drop": {"1"}})
	got := v2.lastRequest()
	if resp.StatusCode != 200 || body != "v2" || got == nil {
		t.Fatalf("canary request: %d %q, want v2's answer", resp.StatusCode, body)
	}
	if got.Header.Get("X-Env") != "canary" || strings.Join(got.Header.Values("X-Tag"), ",") != "client,added" || got.Header.Get("X-Drop") != "" {
		t.Errorf("backend saw X-Env %q X-Tag %q X-Drop %q, want canary, client,added and none",
			got.Header.Get("X-Env"), got.Header.Values("X-Tag"), got.Header.Get("X-Drop"))
	}
	if got.URL.RequestURI() != "/v2/items?x=1" || got.Host != "rewritten.example" {
		t.Errorf("backend saw %s with Host %s, want /v2/items?x=1 with rewritten.example", got.URL.RequestURI(), got.Host)
	}
	if resp.Header.Get("X-Served-By") != "canary" || resp.Header.Get("X-Internal") != "" || resp.Header.Get("X-Backend") != "v2" {
		t.Errorf("client saw X-Served-By %q X-Internal %q X-Backend %q", resp.Header.Get("X-Served-By"), resp.Header.Get("X-Internal"), resp.Header.Get("X-Backend"))
	}

	// Without the header: the second rule, to the destination itself even
	// though the Host it sends is another.
	resp, body = get(t, client, proxy, webName, "/api/items?x=1", nil)
	got = web.lastRequest()
	if resp.StatusCode != 200 || body != "web" || got == nil {
		t.Fatalf("plain request: %d %q, want web's answer", resp.StatusCode, body)
	}
	if got.URL.RequestURI() != "/full?x=1" || got.Host != "other.example" {
		t.Errorf("backend saw %s with Host %s, want /full?x=1 with other.example", got.URL.RequestURI(), got.Host)
	}
}

func TestRouteRedirectIsAnsweredByTheProxy(t *testing.T) {
	web := newRecordingBackend(t, "web")
	lookup := staticLookup{webName: webPolicy(routes.Rule{
		Matches:  []routes.Match{{Path: &routes.PathMatch{Type: routes.PathPrefix, Value: "/old"}}},
		Redirect: &routes.Redirect{Scheme: "https", Hostname: "new.example", Path: &routes.PathRewrite{Prefix: "/new", IsPrefix: true}, StatusCode: 301},
	})}
	proxy, _ := routedProxy(t, staticResolver{webName: endpoint(web.addr)}, lookup)
	resp, _ := get(t, noRedirects(), proxy, webName, "/old/page?id=7", nil)
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://new.example/new/page?id=7" {
		t.Errorf("got %d Location %q, want 301 https://new.example/new/page?id=7", resp.StatusCode, resp.Header.Get("Location"))
	}
	if web.hits.Load() != 0 {
		t.Errorf("the backend got %d requests; the proxy answers a redirect itself", web.hits.Load())
	}
}

func TestRouteWithoutAMatchAnswers404AndGRPCUnimplemented(t *testing.T) {
	web := newRecordingBackend(t, "web")
	lookup := staticLookup{webName: webPolicy(routes.Rule{
		Matches: []routes.Match{{Path: &routes.PathMatch{Type: routes.PathPrefix, Value: "/api"}}},
	})}
	proxy, _ := routedProxy(t, staticResolver{webName: endpoint(web.addr)}, lookup)
	resp, _ := get(t, noRedirects(), proxy, webName, "/web", nil)
	if resp.StatusCode != 404 || !strings.HasPrefix(resp.Header.Get("Skein-Proxy-Error"), "no route") {
		t.Errorf("got %d with Skein-Proxy-Error %q, want 404 \"no route ...\"", resp.StatusCode, resp.Header.Get("Skein-Proxy-Error"))
	}
	_, err := grpcClient(t, proxy, webName).UnaryCall(context.Background(), &testpb.SimpleRequest{})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "no route") {
		t.Errorf("gRPC call: %v, want UNIMPLEMENTED no route", err)
	}
	if web.hits.Load() != 0 {
		t.Errorf("the backend got %d requests", web.hits.Load())
	}
	// A destination without a policy is not routed at all.
	other := newRecordingBackend(t, "other")
	proxy, _ = routedProxy(t, staticResolver{webName: endpoint(other.addr)}, staticLookup{})
	if resp, body := get(t, noRedirects(), proxy, webName, "/web", nil); resp.StatusCode != 200 || body != "other" {
		t.Errorf("without a policy: %d %q, want the backend's 200", resp.StatusCode, body)
	}
}

func TestRouteToABackendDiscoveryDoesNotKnowAnswers503(t *testing.T) {
	web := newRecordingBackend(t, "web")
	lookup := staticLookup{webName: webPolicy(routes.Rule{Backends: []routes.Backend{backendRef(v2Name, "test/web-v2", 1)}})}
	proxy, _ := routedProxy(t, staticResolver{webName: endpoint(web.addr)}, lookup)
	resp, _ := get(t, noRedirects(), proxy, webName, "/", nil)
	if resp.StatusCode != 503 || web.hits.Load() != 0 {
		t.Errorf("got %d, the destination %d requests; want 503 and none (never the client's own destination)", resp.StatusCode, web.hits.Load())
	}
}

// grpcClient is a grpc-go client that calls authority through the proxy.
func grpcClient(t *testing.T, proxy, authority string) testpb.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+proxy, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(authority))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

// grpcBackend is a grpc-go TestService that counts its calls.
type grpcBackend struct {
	testpb.UnimplementedTestServiceServer
	calls atomic.Int64
}

func (b *grpcBackend) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	b.calls.Add(1)
	return &testpb.SimpleResponse{}, nil
}

func newGRPCBackend(t *testing.T) (*grpcBackend, string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &grpcBackend{}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, b)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return b, ln.Addr().String()
}

func TestFaultAbortAnswersTheStatusAtItsPercentage(t *testing.T) {
	web := newRecordingBackend(t, "web")
	gb, gaddr := newGRPCBackend(t)
	const grpcName = "grpc.test.svc.cluster.local:8080"
	abortAll := &routes.Fault{AbortPercent: 100, AbortHTTP: 503, AbortGRPC: int(codes.ResourceExhausted)}
	lookup := staticLookup{
		webName: webPolicy(
			routes.Rule{Matches: []routes.Match{{Path: &routes.PathMatch{Type: routes.PathExact, Value: "/all"}}}, Fault: abortAll},
			routes.Rule{Matches: []routes.Match{{Path: &routes.PathMatch{Type: routes.PathExact, Value: "/half"}}},
				Fault: &routes.Fault{AbortPercent: 50, AbortHTTP: 429}},
			routes.Rule{Matches: []routes.Match{{Path: &routes.PathMatch{Type: routes.PathExact, Value: "/none"}}},
				Fault: &routes.Fault{AbortHTTP: 500}}, // no percentage: nothing injected
		),
		grpcName: {Service: "test/grpc", Port: 8080, Routes: []routes.Route{{Kind: "GRPCRoute", Namespace: "test", Name: "grpc", Rules: []routes.Rule{{Fault: abortAll}}}}},
	}
	proxy, _ := routedProxy(t, staticResolver{webName: endpoint(web.addr), grpcName: endpoint(gaddr)}, lookup)
	client := noRedirects()

	for range 20 {
		if resp, _ := get(t, client, proxy, webName, "/all", nil); resp.StatusCode != 503 {
			t.Fatalf("abort at 100%%: %d, want 503", resp.StatusCode)
		}
	}
	if web.hits.Load() != 0 {
		t.Errorf("aborted requests reached the backend %d times", web.hits.Load())
	}
	const n = 1000
	aborted := 0
	for range n {
		switch resp, _ := get(t, client, proxy, webName, "/half", nil); resp.StatusCode {
		case 429:
			aborted++
		case 200:
		default:
			t.Fatalf("abort at 50%%: %d", resp.StatusCode)
		}
	}
	t.Logf("abort at 50%%: %d of %d aborted", aborted, n)
	if aborted < 430 || aborted > 570 || web.hits.Load() != int64(n-aborted) {
		t.Errorf("abort at 50%%: %d of %d aborted, backend saw %d", aborted, n, web.hits.Load())
	}
	for range 20 {
		if resp, _ := get(t, client, proxy, webName, "/none", nil); resp.StatusCode != 200 {
			t.Fatalf("fault without a percentage: %d, want the backend's 200", resp.StatusCode)
		}
	}

	gc := grpcClient(t, proxy, grpcName)
	for range 10 {
		_, err := gc.UnaryCall(context.Background(), &testpb.SimpleRequest{})
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("gRPC abort: %v, want RESOURCE_EXHAUSTED", err)
		}
	}
	if gb.calls.Load() != 0 {
		t.Errorf("aborted gRPC calls reached the backend %d times", gb.calls.Load())
	}
}

func TestFaultDelayHoldsTheRequest(t *testing.T) {
	web := newRecordingBackend(t, "web")
	const delay = 300 * time.Millisecond
	lookup := staticLookup{webName: webPolicy(routes.Rule{Fault: &routes.Fault{DelayPercent: 100, Delay: delay}})}
	proxy, _ := routedProxy(t, staticResolver{webName: endpoint(web.addr)}, lookup)
	start := time.Now()
	resp, body := get(t, noRedirects(), proxy, webName, "/", nil)
	if took := time.Since(start); resp.StatusCode != 200 || body != "web" || took < delay {
		t.Errorf("delayed request: %d %q after %v, want the backend's answer after at least %v", resp.StatusCode, body, took, delay)
	}
}

// failingLookup is a policy client that cannot answer.
type failingLookup struct{}

func (failingLookup) Policy(context.Context, string) (*routes.Policy, error) {
	return nil, errors.New("controller unreachable")
}

// A destination whose policy cannot be known is not sent on a guess: the
// policy might split, redirect or refuse it.
func TestRouteLookupFailureFailsClosed(t *testing.T) {
	web := newRecordingBackend(t, "web")
	proxy, _ := routedProxy(t, staticResolver{webName: endpoint(web.addr)}, failingLookup{})
	resp, _ := get(t, noRedirects(), proxy, webName, "/", nil)
	if resp.StatusCode != 502 || web.hits.Load() != 0 || !strings.Contains(resp.Header.Get("Skein-Proxy-Error"), "controller unreachable") {
		t.Errorf("got %d (%q), backend %d requests; want 502 and none", resp.StatusCode, resp.Header.Get("Skein-Proxy-Error"), web.hits.Load())
	}
}
