package proxy

import (
	"context"
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
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/proxy/detect"
	"github.com/skeinmesh/skein/internal/proxy/h1"
	"github.com/skeinmesh/skein/internal/proxy/h2"
	"github.com/skeinmesh/skein/internal/proxy/identity"
	"github.com/skeinmesh/skein/internal/proxy/inbound"
	"github.com/skeinmesh/skein/internal/proxy/meshtls"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/proxyerror"
	"github.com/skeinmesh/skein/internal/proxy/ratelimit"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// staticAuthz is an authz.Lookup with fixed policies, standing in for the
// controller's policy stream.
type staticAuthz map[uint16]*authz.Inbound

func (s staticAuthz) Inbound(_ context.Context, port uint16) (*authz.Inbound, error) {
	if in, ok := s[port]; ok {
		return in, nil
	}
	return &authz.Inbound{Port: port, Default: authz.AllUnauthenticated}, nil
}

func (staticAuthz) Watch(ctx context.Context, _ func()) { <-ctx.Done() }

// meshInbound serves the inbound stack over h on loopback as the inbound
// listener does: mesh TLS from peers is terminated with serverID's
// certificate and the client's verified identity named; anything else is
// served as an unmeshed client's plaintext. Every connection goes to app.
func meshInbound(t *testing.T, h stack.Handler, server *identity.Local, app netip.AddrPort) string {
	t.Helper()
	h1s, h2s := h1.NewServer(h, h1.DefaultConfig(), quietLog()), h2.NewServer(h, h2.DefaultConfig(), quietLog())
	t.Cleanup(func() { // after serveEach's cleanup has closed the listener
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h1s.Shutdown(ctx)
		h2s.Shutdown(ctx)
	})
	return serveEach(t, func(c net.Conn) {
		ci := &stack.ConnInfo{Direction: "inbound", OrigDst: app, Client: c.RemoteAddr().(*net.TCPAddr).AddrPort()}
		res, conn, err := detect.Detect(c, time.Second)
		if err == nil && res.Protocol == detect.TLS && meshtls.IsMesh(res.TLS.ALPN) {
			tc, herr := meshtls.Server(context.Background(), conn, server.ServerTLS(meshtls.ALPNs))
			if herr != nil {
				c.Close()
				return
			}
			if ci.ClientID, herr = peerID(tc.State()); herr != nil {
				c.Close()
				return
			}
			res, conn, err = detect.Detect(tc, time.Second)
		}
		switch {
		case err == nil && res.Protocol == detect.HTTP1:
			h1s.ServeConn(conn, ci)
		case err == nil && res.Protocol == detect.HTTP2:
			h2s.ServeConn(conn, ci)
		default:
			c.Close()
		}
	}).String()
}

// meshDialer dials the inbound proxy as a peer proxy would: mesh TLS with
// client's certificate, the proxy checked to be server.
func meshDialer(client *identity.Local, server spiffeid.ID) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return meshtls.Client(ctx, raw, client.ClientTLS(server, []string{meshtls.ALPNHTTP}))
	}
}

// paced calls send rps times a second for d, each call in its own
// goroutine so a slow answer does not slow the offer, and returns the
// successes and the refusals of each second (by when the call was sent).
func paced(rps int, d time.Duration, send func() bool) (ok, refused []int) {
	seconds := int(d / time.Second)
	ok, refused = make([]int, seconds), make([]int, seconds)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(rps))
	defer tick.Stop()
	for elapsed := time.Duration(0); elapsed < d; elapsed = time.Since(start) {
		sec := int(elapsed / time.Second)
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := send()
			mu.Lock()
			defer mu.Unlock()
			if got {
				ok[sec]++
			} else {
				refused[sec]++
			}
		}()
		<-tick.C
	}
	wg.Wait()
	return ok, refused
}

// Through a real inbound proxy, over mesh TLS with identities a real
// identity service certified: 50 requests per second for 3 s from a client
// limited to 10/s per identity get about 10 a second through and 429 with
// the Server and limit named; at the same time an overridden identity
// (25/s) calling with grpc-go gets its own limit and RESOURCE_EXHAUSTED.
func TestRateLimitPerIdentityAndOverrideThroughTheInboundProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("offers traffic for 3 s")
	}
	ids := identitytest.Start(t, identitytest.Options{})
	apiID, webID, batchID := ids.WorkloadID("demo", "api"), ids.WorkloadID("demo", "web"), ids.WorkloadID("demo", "batch")
	api, web, batch := ids.RunLocal(t, apiID), ids.RunLocal(t, webID), ids.RunLocal(t, batchID)

	// The application: plain HTTP and grpc-go's TestService on one port,
	// counting what reaches it.
	var httpHits atomic.Int64
	grpcApp := &grpcBackend{}
	grpcSrv := grpc.NewServer()
	testpb.RegisterTestServiceServer(grpcSrv, grpcApp)
	app := netip.MustParseAddrPort(httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stack.IsGRPC(r.Header.Get("Content-Type")) {
			grpcSrv.ServeHTTP(w, r)
			return
		}
		httpHits.Add(1)
	})))

	policy := staticAuthz{app.Port(): {
		Port: app.Port(), Server: "demo/api", Default: authz.AllUnauthenticated,
		RateLimit: &authz.RateLimit{PerIdentity: 10, Overrides: []authz.RateLimitOverride{
			{RequestsPerSecond: 25, Identities: []string{batchID.String()}},
		}},
	}}
	reg, _ := metrics.New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	proxy := meshInbound(t, inboundStack(ctx, inbound.New(false), stackConfig{
		metrics: reg, tunnelIdleTimeout: time.Hour, engines: testEngines(), log: quietLog(), authz: policy,
	}, nil), api, app)

	// HTTP/2 by prior knowledge inside mesh TLS, as a peer proxy speaks it.
	webDial := meshDialer(web, apiID)
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	webClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: &h2c,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return webDial(ctx, addr) }}}
	cc, err := grpc.NewClient("passthrough:///"+proxy, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(meshDialer(batch, apiID)), grpc.WithAuthority("api.demo.svc.cluster.local"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	batchClient := testpb.NewTestServiceClient(cc)

	const webWhy = "rate limited by Server demo/api: identity limit of 10 requests per second"
	const batchWhy = "rate limited by Server demo/api: override limit of 25 requests per second"
	var unexpected sync.Map // what no answer should be, once each
	var webOK, webRefused, batchOK, batchRefused []int
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		webOK, webRefused = paced(50, 3*time.Second, func() bool {
			resp, err := webClient.Get("http://" + proxy + "/")
			if err != nil {
				unexpected.Store(err.Error(), true)
				return false
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get(proxyerror.Header) == webWhy &&
				string(body) == "Too Many Requests\n" {
				return false
			}
			if resp.StatusCode != http.StatusOK {
				unexpected.Store(fmt.Sprintf("web: %d %s=%q %q", resp.StatusCode, proxyerror.Header, resp.Header.Get(proxyerror.Header), body), true)
			}
			return resp.StatusCode == http.StatusOK
		})
	}()
	go func() {
		defer wg.Done()
		batchOK, batchRefused = paced(50, 3*time.Second, func() bool {
			_, err := batchClient.UnaryCall(context.Background(), &testpb.SimpleRequest{})
			if s := status.Convert(err); err != nil && (s.Code() != codes.ResourceExhausted || s.Message() != batchWhy) {
				unexpected.Store(fmt.Sprintf("batch: %v", err), true)
			}
			return err == nil
		})
	}()
	wg.Wait()
	unexpected.Range(func(k, _ any) bool { t.Errorf("unexpected answer: %v", k); return true })
	t.Logf("web (10/s): %v through, %v refused; batch (25/s): %v through, %v refused", webOK, webRefused, batchOK, batchRefused)

	for s := range webOK {
		if webOK[s] < 8 || webOK[s] > 12 {
			t.Errorf("web: %d through in second %d, want 10 ± 2 (all: %v)", webOK[s], s, webOK)
		}
		if batchOK[s] < 21 || batchOK[s] > 29 {
			t.Errorf("batch: %d through in second %d, want 25 ± 4 (all: %v)", batchOK[s], s, batchOK)
		}
	}
	if got, want := httpHits.Load(), int64(sum(webOK)); got != want {
		t.Errorf("the application got %d HTTP requests, want the %d that were let through", got, want)
	}
	if got, want := grpcApp.calls.Load(), int64(sum(batchOK)); got != want {
		t.Errorf("the application got %d gRPC calls, want the %d that were let through", got, want)
	}
	want := fmt.Sprintf(`
# HELP inbound_http_local_ratelimit_total Inbound HTTP requests refused (429 / RESOURCE_EXHAUSTED) by a local rate limit of their Server.
# TYPE inbound_http_local_ratelimit_total counter
inbound_http_local_ratelimit_total{client_id=%q,scope="override",srv_name="demo/api"} %d
inbound_http_local_ratelimit_total{client_id=%q,scope="identity",srv_name="demo/api"} %d
`, batchID.String(), sum(batchRefused), webID.String(), sum(webRefused))
	if err := testutil.GatherAndCompare(reg.Gatherer(), strings.NewReader(want), "inbound_http_local_ratelimit_total"); err != nil {
		t.Error(err)
	}
}

// Unmeshed clients share one bucket and get a bare 429.
func TestRateLimitAnswersUnmeshedClientsWithABare429(t *testing.T) {
	ids := identitytest.Start(t, identitytest.Options{})
	api := ids.RunLocal(t, ids.WorkloadID("demo", "api"))
	app := netip.MustParseAddrPort(httpBackend(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	policy := staticAuthz{app.Port(): {Port: app.Port(), Server: "demo/api", RateLimit: &authz.RateLimit{PerIdentity: 1}}}
	reg, _ := metrics.New(nil)
	proxy := meshInbound(t, inboundStack(context.Background(), inbound.New(false), stackConfig{
		metrics: reg, tunnelIdleTimeout: time.Hour, engines: testEngines(), log: quietLog(), authz: policy,
	}, nil), api, app)
	// Unmeshed clients, each on a connection of its own, within the same
	// instant: past the shared bucket's burst they are refused.
	var statuses []string
	for range ratelimit.Burst(1) + 1 {
		resp, err := (&http.Client{Transport: &http.Transport{}}).Get("http://" + proxy + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		statuses = append(statuses, fmt.Sprintf("%d %q %s=%q", resp.StatusCode, body, proxyerror.Header, resp.Header.Get(proxyerror.Header)))
	}
	const ok, refused = `200 "" skein-proxy-error=""`, `429 "Too Many Requests\n" skein-proxy-error=""`
	if statuses[0] != ok || statuses[len(statuses)-1] != refused {
		t.Errorf("unmeshed clients got %q, want %s first and %s last", statuses, ok, refused)
	}
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}
