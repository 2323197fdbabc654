package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startServer serves cfg on a real loopback socket and returns its base URL.
// The server is stopped, and Serve's result checked, at cleanup.
func startServer(t *testing.T, cfg Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func do(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func TestLiveAndMetrics(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "request_total 1\n")
	})
	url := startServer(t, Config{Metrics: metrics})

	if code, body := do(t, "GET", url+"/live"); code != 200 || body != "live" {
		t.Errorf("GET /live = %d %q, want 200 live", code, body)
	}
	if code, body := do(t, "GET", url+"/metrics"); code != 200 || body != "request_total 1" {
		t.Errorf("GET /metrics = %d %q", code, body)
	}
	if code, _ := do(t, "GET", url+"/nope"); code != 404 {
		t.Errorf("GET /nope = %d, want 404", code)
	}
}

func TestReadyFollowsReadinessFunc(t *testing.T) {
	var notReady atomic.Pointer[error]
	noCert := errors.New("no certificate yet")
	notReady.Store(&noCert)
	url := startServer(t, Config{Ready: func() error {
		if err := notReady.Load(); err != nil {
			return *err
		}
		return nil
	}})

	if code, body := do(t, "GET", url+"/ready"); code != 503 || !strings.Contains(body, "no certificate yet") {
		t.Errorf("GET /ready while not ready = %d %q, want 503 with the reason", code, body)
	}
	notReady.Store(nil)
	if code, body := do(t, "GET", url+"/ready"); code != 200 || body != "ready" {
		t.Errorf("GET /ready when ready = %d %q, want 200 ready", code, body)
	}
}

// get serves one GET through the admin handler as if it came from remote.
func get(h http.Handler, remote, path string) (int, string) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", path, nil)
	req.RemoteAddr = remote
	h.ServeHTTP(rec, req)
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

// What the admin port tells a client on the pod network and what only the
// pod's own containers (loopback) read.
func TestWhatTheNetworkGetsFromTheAdminPort(t *testing.T) {
	reason := errors.New(`rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp 198.18.0.2:8086: connect: connection refused"`)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "request_total 1\n") })
	identity := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"identity":"spiffe://x/ns/a/sa/b"}`) })
	const local, remote, scraper = "127.0.0.1:40000", "10.1.2.3:40000", "10.9.0.7:40000"
	tests := []struct {
		name     string
		cfg      Config
		remote   string
		path     string
		wantCode int
		wantBody string
	}{
		{"ready to the network", Config{}, remote, "/ready", 200, "ready"},
		{"not ready to the network: no reason", Config{Ready: func() error { return reason }}, remote, "/ready", 503, "not ready"},
		{"not ready to loopback: the reason", Config{Ready: func() error { return reason }}, local, "/ready", 503, "not ready: " + reason.Error()},
		{"live to the network", Config{}, remote, "/live", 200, "live"},
		{"metrics to the network", Config{Metrics: metrics}, remote, "/metrics", 200, "request_total 1"},
		{"metrics to an allowed network", Config{Metrics: metrics, MetricsFrom: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}}, scraper, "/metrics", 200, "request_total 1"},
		{"metrics outside the allowed networks", Config{Metrics: metrics, MetricsFrom: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}}, remote, "/metrics", 403, "forbidden"},
		{"metrics to loopback whatever the networks", Config{Metrics: metrics, MetricsFrom: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}}, local, "/metrics", 200, "request_total 1"},
		{"identity to the network", Config{Handlers: map[string]http.Handler{"/identity": identity}}, remote, "/identity", 403, "forbidden"},
		{"identity to loopback", Config{Handlers: map[string]http.Handler{"/identity": identity}}, local, "/identity", 200, `{"identity":"spiffe://x/ns/a/sa/b"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
			if code, body := get(newHandler(tt.cfg), tt.remote, tt.path); code != tt.wantCode || body != tt.wantBody {
				t.Errorf("GET %s from %s = %d %q, want %d %q", tt.path, tt.remote, code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestReadyWithoutFuncIsReady(t *testing.T) {
	url := startServer(t, Config{})
	if code, _ := do(t, "GET", url+"/ready"); code != 200 {
		t.Errorf("GET /ready = %d, want 200", code)
	}
}

func TestShutdownIsCalledOnceAndStopsServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	cfg := Config{Shutdown: func() { calls.Add(1); cancel() }}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, cfg) }()
	url := "http://" + ln.Addr().String()

	if code, _ := do(t, "POST", url+"/shutdown"); code != http.StatusAccepted {
		t.Fatalf("POST /shutdown = %d, want 202", code)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after /shutdown cancelled its context")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("shutdown called %d times, want 1", n)
	}
}

func TestShutdownRepeatedCallsOnce(t *testing.T) {
	var calls atomic.Int32
	h := newHandler(Config{Shutdown: func() { calls.Add(1) }})
	for range 3 {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/shutdown", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			t.Errorf("POST /shutdown = %d, want 202", rec.Code)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("shutdown called %d times, want 1", n)
	}
}

func TestLoopbackOnlyEndpoints(t *testing.T) {
	tests := []struct {
		remote string
		want   int
	}{
		{"127.0.0.1:40000", http.StatusAccepted},
		{"127.0.0.53:40000", http.StatusAccepted},
		{"[::1]:40000", http.StatusAccepted},
		{"[::ffff:127.0.0.1]:40000", http.StatusAccepted},
		{"10.1.2.3:40000", http.StatusForbidden},
		{"[fd00::1]:40000", http.StatusForbidden},
		{"0.0.0.0:40000", http.StatusForbidden},
		{"not-an-address", http.StatusForbidden},
		{"", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			var calls atomic.Int32
			h := newHandler(Config{Shutdown: func() { calls.Add(1) }})

			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/shutdown", nil)
			req.RemoteAddr = tt.remote
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("POST /shutdown from %q = %d, want %d", tt.remote, rec.Code, tt.want)
			}
			wantCalls, wantPprof := int32(0), http.StatusForbidden
			if tt.want == http.StatusAccepted {
				wantCalls, wantPprof = 1, http.StatusOK
			}
			if got := calls.Load(); got != wantCalls {
				t.Errorf("shutdown called %d times from %q, want %d", got, tt.remote, wantCalls)
			}

			rec = httptest.NewRecorder()
			req = httptest.NewRequest("GET", "/debug/pprof/cmdline", nil)
			req.RemoteAddr = tt.remote
			h.ServeHTTP(rec, req)
			if rec.Code != wantPprof {
				t.Errorf("GET /debug/pprof/cmdline from %q = %d, want %d", tt.remote, rec.Code, wantPprof)
			}
		})
	}
}

func TestPprofOverLoopback(t *testing.T) {
	url := startServer(t, Config{})
	if code, body := do(t, "GET", url+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("GET /debug/pprof/ = %d, body lacks the profile index", code)
	}
	if code, body := do(t, "GET", url+"/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile") {
		t.Errorf("GET /debug/pprof/goroutine = %d %.100q", code, body)
	}
}

func TestMethodChecks(t *testing.T) {
	url := startServer(t, Config{Shutdown: func() {}, Metrics: http.NotFoundHandler()})
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/shutdown", http.StatusMethodNotAllowed},
		{"PUT", "/shutdown", http.StatusMethodNotAllowed},
		{"POST", "/live", http.StatusMethodNotAllowed},
		{"DELETE", "/ready", http.StatusMethodNotAllowed},
		{"POST", "/metrics", http.StatusMethodNotAllowed},
		{"HEAD", "/live", http.StatusOK},
		{"HEAD", "/ready", http.StatusOK},
	}
	for _, tt := range tests {
		if code, _ := do(t, tt.method, url+tt.path); code != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, code, tt.want)
		}
	}
}

func TestShutdownWithoutCallbackIsNotImplemented(t *testing.T) {
	url := startServer(t, Config{})
	if code, _ := do(t, "POST", url+"/shutdown"); code != http.StatusNotImplemented {
		t.Errorf("POST /shutdown without a callback = %d, want 501", code)
	}
}

func TestExtraHandlersAreMounted(t *testing.T) {
	tap := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tap") })
	url := startServer(t, Config{Handlers: map[string]http.Handler{"/tap": tap}})
	if code, body := do(t, "GET", url+"/tap"); code != 200 || body != "tap" {
		t.Errorf("GET /tap = %d %q", code, body)
	}
}

func TestServeReportsListenerFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if err := Serve(context.Background(), ln, Config{}); err == nil {
		t.Error("Serve on a closed listener returned nil")
	}
}

func TestRunListensOnAddr(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Run(ctx, Config{Addr: "127.0.0.1:0"}); err != nil {
		t.Errorf("Run with a done context: %v", err)
	}
	if err := Run(context.Background(), Config{Addr: "256.0.0.1:1"}); err == nil {
		t.Error("Run on a bad address returned nil")
	}
}

// The TCP probe connects to the probed port on the address the probe came
// to, as the kubelet would, and only for the ports it was given.
func TestTCPProbeConnectsToTheApplication(t *testing.T) {
	listen := func(addr string) net.Listener {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	portOf := func(ln net.Listener) uint16 { return uint16(ln.Addr().(*net.TCPAddr).Port) }
	open := listen("127.0.0.2:0")
	elsewhere := listen("127.0.0.3:0") // not on the address probed
	closedLn := listen("127.0.0.2:0")
	closed := portOf(closedLn)
	closedLn.Close()
	unlisted := listen("127.0.0.2:0")

	ln := listen("127.0.0.2:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, Config{ProbeTCPPorts: []uint16{portOf(open), portOf(elsewhere), closed}})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	url := "http://" + ln.Addr().String() + "/probe/tcp/"
	for _, tc := range []struct {
		port string
		code int
		body string
	}{
		{fmt.Sprint(portOf(open)), 200, fmt.Sprintf("port %d accepts connections", portOf(open))},
		{fmt.Sprint(portOf(elsewhere)), 503, fmt.Sprintf("port %d does not accept connections", portOf(elsewhere))},
		{fmt.Sprint(closed), 503, fmt.Sprintf("port %d does not accept connections", closed)},
		{fmt.Sprint(portOf(unlisted)), 404, "not a probed port"},
		{"http", 404, "not a probed port"},
		{"70000", 404, "not a probed port"},
	} {
		if code, body := do(t, "GET", url+tc.port); code != tc.code || body != tc.body {
			t.Errorf("GET /probe/tcp/%s = %d %q, want %d %q", tc.port, code, body, tc.code, tc.body)
		}
	}
}
