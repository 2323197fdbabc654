package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/outbound"
	"github.com/skeinmesh/skein/internal/proxy/proxyerror"
	"github.com/skeinmesh/skein/internal/proxy/retry"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/routes"
)

// These tests run the retry layer in the outbound path as stacks.go
// builds it (metrics, errors, retry, resolve, balance, connect over the
// real engines), with a test layer in the route layer's place that gives
// every request one rule, and net/http, grpc-go or raw sockets as the
// backend that witnesses what was sent.

const retryDest = "echo.test.svc.cluster.local:8080"

// retryProxy serves the outbound layers on loopback, sending retryDest
// to backend under rule and budget, and returns its address and metrics.
func retryProxy(t *testing.T, backend string, rule routes.Rule, budget routes.Budget) (string, *metrics.Registry) {
	t.Helper()
	return retryProxyTo(t, []string{backend}, rule, budget)
}

// retryProxyTo is retryProxy with retryDest's endpoints at backends.
func retryProxyTo(t *testing.T, backends []string, rule routes.Rule, budget routes.Budget) (string, *metrics.Registry) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	opts := balance.DefaultOptions()
	opts.Breaker.Consecutive = 0 // endpoints failing on purpose: keep them
	var eps []discovery.Endpoint
	for _, b := range backends {
		eps = append(eps, discovery.Endpoint{Addr: netip.MustParseAddrPort(b), Labels: map[string]string{"namespace": "test", "service": "echo"}})
	}
	out := outbound.New(ctx, staticResolver{retryDest: eps}, opts, nil, quietLog())
	reg, err := metrics.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := &routes.Policy{Service: "test/echo", Port: 8080, Budget: budget,
		Routes: []routes.Route{{Kind: "HTTPRoute", Namespace: "test", Name: "echo", Rules: []routes.Rule{rule}}}}
	route := func(next stack.Handler) stack.Handler {
		return stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
			req.Info.Policy, req.Info.Rule = policy, &policy.Routes[0].Rules[0]
			req.Info.Route = policy.Routes[0].RouteName()
			return next.Serve(ctx, req)
		})
	}
	h := stack.Build(out.Connect(testEngines()),
		metrics.Layer(reg, metrics.DirectionOutbound),
		proxyerror.Layer(quietLog()),
		route,
		retry.Layer(retry.NewBudgets(0, nil), reg, quietLog()),
		out.Resolve,
		out.Balance,
	)
	return serveEngines(t, h).String(), reg
}

// retryOn5xx is a rule retrying 5xx answers with a short back-off.
func retryOn5xx() routes.Rule {
	return routes.Rule{Retry: &routes.Retry{HTTP: []routes.StatusRange{{Min: 500, Max: 599}},
		BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond}}
}

// send makes one request through proxy to retryDest and returns its
// status and body.
func send(t *testing.T, client *http.Client, proxy, method string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+proxy+"/things/1?x=y", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = retryDest
	req.Header.Add("X-Multi", "one")
	req.Header.Add("X-Multi", "two")
	req.Header.Set("Authorization", "Bearer abc")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// rawRequest is what a raw HTTP/1.1 backend received: the request line and
// header lines exactly as sent, and the body's bytes (de-chunked).
type rawRequest struct {
	head []byte
	body []byte
}

// rawBackend is an HTTP/1.1 server on a bare socket that answers the n-th
// request with statuses[n] (the last one repeating; 0 closes the
// connection without an answer) and keeps every request as it arrived.
type rawBackend struct {
	statuses []int
	mu       sync.Mutex
	requests []rawRequest
}

func startRawBackend(t *testing.T, statuses ...int) (*rawBackend, string) {
	t.Helper()
	b := &rawBackend{statuses: statuses}
	return b, serveEach(t, b.serve).String()
}

func (b *rawBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := readRawRequest(br)
		if err != nil {
			return
		}
		b.mu.Lock()
		b.requests = append(b.requests, req)
		status := b.statuses[min(len(b.requests), len(b.statuses))-1]
		b.mu.Unlock()
		if status == 0 {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Length: 2\r\n\r\nok", status, http.StatusText(status))
	}
}

func (b *rawBackend) received() []rawRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]rawRequest(nil), b.requests...)
}

func readRawRequest(br *bufio.Reader) (rawRequest, error) {
	var r rawRequest
	length, chunked := 0, false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return r, err
		}
		r.head = append(r.head, line...)
		if line == "\r\n" {
			break
		}
		name, value, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch strings.ToLower(name) {
		case "content-length":
			length, _ = strconv.Atoi(strings.TrimSpace(value))
		case "transfer-encoding":
			chunked = strings.EqualFold(strings.TrimSpace(value), "chunked")
		}
	}
	if !chunked {
		r.body = make([]byte, length)
		_, err := io.ReadFull(br, r.body)
		return r, err
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return r, err
		}
		size, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
		if err != nil {
			return r, err
		}
		if size == 0 {
			for line != "\r\n" { // trailers, then the blank line
				if line, err = br.ReadString('\n'); err != nil {
					return r, err
				}
			}
			return r, nil
		}
		chunk := make([]byte, size+2)
		if _, err := io.ReadFull(br, chunk); err != nil {
			return r, err
		}
		r.body = append(r.body, chunk[:size]...)
	}
}

// metricSum adds up the samples of a counter whose labels include want.
func metricSum(t *testing.T, reg *metrics.Registry, name string, want map[string]string) float64 {
	t.Helper()
	families, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	sample:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue sample
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26 + i/997%3)
	}
	return b
}

// A backend failing once then succeeding: the client sees 200, the
// backend saw two requests with the same request line, header lines and
// body bytes, and the metrics tell the first attempt's failure from the
// client's success.
func TestRetryFailingOnceSendsTheSameRequestTwice(t *testing.T) {
	for _, c := range []struct {
		name string
		body func() io.Reader
	}{
		{"GET without body", func() io.Reader { return nil }},
		{"PUT with a 20 KiB body", func() io.Reader { return bytes.NewReader(payload(20 << 10)) }},
		{"PUT with a 20 KiB body of unknown length", func() io.Reader { return io.MultiReader(bytes.NewReader(payload(20 << 10))) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			backend, addr := startRawBackend(t, 503, 200)
			proxy, reg := retryProxy(t, addr, retryOn5xx(), routes.Budget{})
			method := "GET"
			if c.body() != nil {
				method = "PUT"
			}
			status, body := send(t, &http.Client{Timeout: 10 * time.Second}, proxy, method, c.body())
			if status != 200 || string(body) != "ok" {
				t.Fatalf("client got %d %q, want 200 ok", status, body)
			}
			got := backend.received()
			if len(got) != 2 {
				t.Fatalf("backend saw %d requests, want 2", len(got))
			}
			if !bytes.Equal(got[0].head, got[1].head) {
				t.Errorf("the retry's request line and header lines differ:\nfirst:\n%s\nretry:\n%s", got[0].head, got[1].head)
			}
			if want := c.body(); want != nil {
				wantBody, _ := io.ReadAll(want)
				if !bytes.Equal(got[0].body, wantBody) || !bytes.Equal(got[1].body, wantBody) {
					t.Errorf("bodies of %d and %d bytes, want both the client's %d bytes", len(got[0].body), len(got[1].body), len(wantBody))
				}
			}
			route := map[string]string{"route_name": "test/echo", "authority": retryDest}
			for _, m := range []struct {
				name   string
				labels map[string]string
				want   float64
			}{
				{"route_actual_response_total", map[string]string{"attempt": "first", "status_code": "503", "classification": "failure"}, 1},
				{"route_actual_response_total", map[string]string{"attempt": "retry", "status_code": "200", "classification": "success"}, 1},
				{"route_retry_total", map[string]string{"result": "attempted"}, 1},
				{"route_retry_total", map[string]string{"result": "succeeded"}, 1},
				{"route_retry_total", map[string]string{"result": "budget_exhausted"}, 0},
				{"response_total", map[string]string{"status_code": "200", "classification": "success"}, 1},
				{"response_total", map[string]string{"status_code": "503"}, 0},
			} {
				for k, v := range route {
					m.labels[k] = v
				}
				if got := metricSum(t, reg, m.name, m.labels); got != m.want {
					t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
				}
			}
		})
	}
}

// The same over HTTP/2 end to end, net/http as the witness of what the
// application received.
func TestRetryOverHTTP2ReachesTheApplicationUnchanged(t *testing.T) {
	type seen struct {
		header http.Header
		body   []byte
		uri    string
	}
	var mu sync.Mutex
	var requests []seen
	addr := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		requests = append(requests, seen{r.Header.Clone(), body, r.RequestURI})
		n := len(requests)
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "ok")
	}))
	proxy, _ := retryProxy(t, addr, retryOn5xx(), routes.Budget{})
	want := payload(40 << 10)
	status, body := send(t, h2cClient(), proxy, "PUT", bytes.NewReader(want))
	if status != 200 || string(body) != "ok" {
		t.Fatalf("client got %d %q, want 200 ok", status, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(requests) != 2 {
		t.Fatalf("backend saw %d requests, want 2", len(requests))
	}
	a, b := requests[0], requests[1]
	if fmt.Sprint(a.header) != fmt.Sprint(b.header) || a.uri != b.uri {
		t.Errorf("the retry's header differs:\n%v %v\n%v %v", a.uri, a.header, b.uri, b.header)
	}
	if !bytes.Equal(a.body, want) || !bytes.Equal(b.body, want) {
		t.Errorf("bodies of %d and %d bytes, want both the client's %d", len(a.body), len(b.body), len(want))
	}
}

// istio#50506: a POST is not replayed unless the route allows it.
func TestRetryPOSTOnlyWhenTheRouteAllowsNonIdempotent(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("NonIdempotent=%v", allow), func(t *testing.T) {
			backend, addr := startRawBackend(t, 503, 200)
			rule := retryOn5xx()
			rule.Retry.NonIdempotent = allow
			proxy, _ := retryProxy(t, addr, rule, routes.Budget{})
			status, _ := send(t, &http.Client{Timeout: 10 * time.Second}, proxy, "POST", strings.NewReader("pay 100"))
			wantStatus, wantRequests := 503, 1
			if allow {
				wantStatus, wantRequests = 200, 2
			}
			if status != wantStatus || len(backend.received()) != wantRequests {
				t.Fatalf("client got %d, backend saw %d requests; want %d and %d", status, len(backend.received()), wantStatus, wantRequests)
			}
		})
	}
}

// "reset": a connection lost before any answer is retried.
func TestRetryOnResetWhenAsked(t *testing.T) {
	for _, reset := range []bool{false, true} {
		t.Run(fmt.Sprintf("reset=%v", reset), func(t *testing.T) {
			backend, addr := startRawBackend(t, 0, 200)
			rule := routes.Rule{Retry: &routes.Retry{GatewayError: true, Reset: reset, BackoffBase: time.Millisecond}}
			proxy, _ := retryProxy(t, addr, rule, routes.Budget{})
			status, _ := send(t, &http.Client{Timeout: 10 * time.Second}, proxy, "GET", nil)
			want := 502
			if reset {
				want = 200
			}
			if status != want {
				t.Fatalf("client got %d after the backend hung up (backend saw %d requests), want %d", status, len(backend.received()), want)
			}
		})
	}
}

// A retry goes through the balancer again: with one of two endpoints
// always failing, every request succeeds, the failing endpoint's answers
// retried on the other. (The balancer avoids the failing endpoint and
// probes it now and then: the test runs until it has been tried twice.)
func TestRetryLandsOnAnotherEndpoint(t *testing.T) {
	bad, badAddr := startRawBackend(t, 503)
	good, goodAddr := startRawBackend(t, 200)
	proxy, _ := retryProxyTo(t, []string{badAddr, goodAddr}, retryOn5xx(), routes.Budget{})
	client := &http.Client{Timeout: 10 * time.Second}
	n := 0
	for ; n < 2000 && len(bad.received()) < 2; n++ {
		if status, _ := send(t, client, proxy, "GET", nil); status != 200 {
			t.Fatalf("request %d: %d, want 200", n, status)
		}
	}
	if len(bad.received()) < 2 || len(good.received()) != n {
		t.Fatalf("after %d requests the failing endpoint saw %d, the healthy one %d; want 2 and %d", n, len(bad.received()), len(good.received()), n)
	}
	t.Logf("%d requests: failing endpoint %d attempts, healthy %d", n, len(bad.received()), len(good.received()))
}
