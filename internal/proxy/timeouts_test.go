package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/routes"
)

// slowBackend answers after wait unless the request is cancelled first,
// which it reports on cancelled; it records each request's grpc-timeout.
// With headersFirst it sends its headers and a first chunk at once.
type slowBackend struct {
	addr        string
	cancelled   chan struct{}
	grpcTimeout chan string
}

func newSlowBackend(t *testing.T, wait time.Duration, headersFirst bool) *slowBackend {
	b := &slowBackend{cancelled: make(chan struct{}, 100), grpcTimeout: make(chan string, 100)}
	b.addr = httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.grpcTimeout <- r.Header.Get("Grpc-Timeout")
		if headersFirst {
			io.WriteString(w, "first chunk\n")
			w.(http.Flusher).Flush()
		}
		select {
		case <-time.After(wait):
			io.WriteString(w, "late\n")
		case <-r.Context().Done():
			b.cancelled <- struct{}{}
		}
	}))
	return b
}

func (b *slowBackend) waitCancelled(t *testing.T) {
	t.Helper()
	select {
	case <-b.cancelled:
	case <-time.After(5 * time.Second):
		t.Error("the backend's request was not cancelled")
	}
}

func timeoutPolicy(to routes.Timeouts) staticLookup {
	return staticLookup{webName: webPolicy(routes.Rule{Timeouts: to})}
}

func TestRequestTimeoutAnswers504AndCancelsTheBackend(t *testing.T) {
	for _, tt := range []struct {
		name     string
		timeouts routes.Timeouts
		kind     string
	}{
		{"request", routes.Timeouts{Request: 200 * time.Millisecond}, "request"},
		{"backend request without retries", routes.Timeouts{BackendRequest: 200 * time.Millisecond, Request: 5 * time.Second}, "backend_request"},
		{"response header", routes.Timeouts{ResponseHeader: 200 * time.Millisecond}, "response_header"},
		{"idle", routes.Timeouts{Idle: 200 * time.Millisecond}, "idle"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			backend := newSlowBackend(t, time.Second, false)
			proxy, reg := routedProxy(t, staticResolver{webName: endpoint(backend.addr)}, timeoutPolicy(tt.timeouts))
			start := time.Now()
			resp, body := get(t, noRedirects(), proxy, webName, "/slow", nil)
			took := time.Since(start)
			t.Logf("answered %d after %v: %s", resp.StatusCode, took, resp.Header.Get("Skein-Proxy-Error"))
			if resp.StatusCode != http.StatusGatewayTimeout || body != "Gateway Timeout\n" ||
				!strings.HasPrefix(resp.Header.Get("Skein-Proxy-Error"), "request timeout") {
				t.Errorf("got %d %q (%q), want 504 with the reason", resp.StatusCode, body, resp.Header.Get("Skein-Proxy-Error"))
			}
			if took >= time.Second {
				t.Errorf("answered after %v, when the backend answers after 1s", took)
			}
			backend.waitCancelled(t)
			if err := testutil.GatherAndCompare(reg.Gatherer(), strings.NewReader(timeoutsCounted(tt.kind, 1)), "outbound_http_timeouts_total"); err != nil {
				t.Error(err)
			}
		})
	}
}

// Once the response headers went to the client, a timeout can only cut
// the response: the client sees its body fail, the backend the cancel.
func TestRequestTimeoutAfterTheHeadersCutsTheBody(t *testing.T) {
	backend := newSlowBackend(t, 5*time.Second, true)
	proxy, reg := routedProxy(t, staticResolver{webName: endpoint(backend.addr)}, timeoutPolicy(routes.Timeouts{Request: 300 * time.Millisecond}))
	req, _ := http.NewRequest("GET", "http://"+proxy+"/stream", nil)
	req.Host = webName
	resp, err := noRedirects().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "first chunk\n" || err == nil {
		t.Errorf("got %d %q, body error %v; want 200, the first chunk, then the body cut", resp.StatusCode, body, err)
	}
	backend.waitCancelled(t)
	if err := testutil.GatherAndCompare(reg.Gatherer(), strings.NewReader(timeoutsCounted("request", 1)), "outbound_http_timeouts_total"); err != nil {
		t.Error(err)
	}
}

// The idle timeout watches bytes moving: a body that keeps moving is not
// idle, one that stops is cut.
func TestIdleTimeoutSparesAMovingBodyAndCutsAStalledOne(t *testing.T) {
	stalled := make(chan struct{}, 1)
	addr := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 6 {
			io.WriteString(w, "tick\n")
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
		<-r.Context().Done()
		stalled <- struct{}{}
	}))
	proxy, _ := routedProxy(t, staticResolver{webName: endpoint(addr)}, timeoutPolicy(routes.Timeouts{Idle: 400 * time.Millisecond}))
	req, _ := http.NewRequest("GET", "http://"+proxy+"/ticks", nil)
	req.Host = webName
	resp, err := noRedirects().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if strings.Count(string(body), "tick\n") != 6 || err == nil {
		t.Errorf("got %q, body error %v; want six ticks (600 ms, each under the idle timeout) and then the body cut", body, err)
	}
	select {
	case <-stalled:
	case <-time.After(5 * time.Second):
		t.Error("the backend's request was not cancelled")
	}
}

// timeoutsCounted is outbound_http_timeouts_total with n timeouts of kind
// on webName's route.
func timeoutsCounted(kind string, n int) string {
	return fmt.Sprintf(`
# HELP outbound_http_timeouts_total Outbound HTTP requests cut short by a timeout of their route or their grpc-timeout.
# TYPE outbound_http_timeouts_total counter
outbound_http_timeouts_total{authority=%q,route_name="test/web-split",timeout=%q} %d
`, webName, kind, n)
}

// A gRPC client's deadline and the route's request timeout: the shorter
// bounds the call, the backend is told what remains, and the client gets
// DEADLINE_EXCEEDED from the proxy.
func TestGRPCTimeoutIsHonouredAndShortenedUpstream(t *testing.T) {
	for _, tt := range []struct {
		name     string
		route    time.Duration
		deadline time.Duration
		max      time.Duration // the grpc-timeout the backend may see, at most
		kind     string
	}{
		{"route shorter", 300 * time.Millisecond, 10 * time.Second, 300 * time.Millisecond, "request"},
		{"client shorter", 10 * time.Second, 400 * time.Millisecond, 400 * time.Millisecond, "grpc_timeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			backend := newSlowBackend(t, 30*time.Second, false)
			proxy, _ := routedProxy(t, staticResolver{webName: endpoint(backend.addr)}, timeoutPolicy(routes.Timeouts{Request: tt.route}))
			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()
			_, err := grpcClient(t, proxy, webName).UnaryCall(ctx, &testpb.SimpleRequest{})
			if status.Code(err) != codes.DeadlineExceeded {
				t.Errorf("call: %v, want DEADLINE_EXCEEDED", err)
			}
			if tt.kind == "request" && !strings.Contains(err.Error(), "request timeout") {
				t.Errorf("call: %v, want the proxy's DEADLINE_EXCEEDED (request timeout)", err)
			}
			var sent string
			select {
			case sent = <-backend.grpcTimeout:
			case <-time.After(5 * time.Second):
				t.Fatal("the backend got no request")
			}
			d, ok := timeoutValue(sent)
			t.Logf("backend saw grpc-timeout %q (%v)", sent, d)
			if !ok || d > tt.max || d < tt.max/2 {
				t.Errorf("backend saw grpc-timeout %q, want at most %v and not much less", sent, tt.max)
			}
			backend.waitCancelled(t)
		})
	}
}

// timeoutValue reads a grpc-timeout value (see the timeout package).
func timeoutValue(v string) (time.Duration, bool) {
	if len(v) < 2 {
		return 0, false
	}
	units := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second, 'm': time.Millisecond, 'u': time.Microsecond, 'n': 1}
	unit, ok := units[v[len(v)-1]]
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	return time.Duration(n) * unit, ok && err == nil
}
