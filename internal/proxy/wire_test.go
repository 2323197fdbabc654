package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skeinmesh/skein/internal/proxy/clientpool"
	"github.com/skeinmesh/skein/internal/proxy/detect"
	"github.com/skeinmesh/skein/internal/proxy/h1"
	"github.com/skeinmesh/skein/internal/proxy/h2"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/proxyerror"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/proxy/tunnel"
)

// These tests run the layers the stacks put around every request (metrics,
// errors, tunnels) with the real engines on loopback sockets, over a fixed
// terminal that stands in for resolve/balance/connect.

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// fixedUpstream sends every request to one address with the engines, and
// says it was resolved to service (empty for none).
type fixedUpstream struct {
	addr    netip.AddrPort
	service string
	err     error // answered instead, when set
	clients *clientpool.Pool[int, clientpool.Client]
}

func newFixedUpstream(t *testing.T, addr string) *fixedUpstream {
	u := &fixedUpstream{addr: netip.MustParseAddrPort(addr)}
	engines := testEngines()
	u.clients = clientpool.New(2, func(major int) clientpool.Client {
		return engines.For(major)(func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		})
	})
	t.Cleanup(u.clients.Close)
	return u
}

func (u *fixedUpstream) Serve(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	if u.err != nil {
		req.Body.Close()
		return nil, u.err
	}
	req.Info.Endpoint.Addr = u.addr
	req.Info.Endpoint.Labels = map[string]string{"service": "backend"}
	req.Info.Service = u.service
	return u.clients.Get(req.ProtoMajor).Serve(ctx, req)
}

// testEngines are the proxy's engines with their default configuration.
func testEngines() clientpool.Engines { return engines(newEngineConfig(0), quietLog()) }

// testProxy serves the layers of one direction over end on loopback.
type testProxy struct {
	addr  string
	http1 *h1.Server
	http2 *h2.Server
}

func startProxy(t *testing.T, end stack.Handler, reg *metrics.Registry, ci stack.ConnInfo, idle time.Duration) *testProxy {
	t.Helper()
	if reg == nil {
		reg, _ = metrics.New(nil)
	}
	h := stack.Build(end, metrics.Layer(reg, ci.Direction), proxyerror.Layer(quietLog()), tunnel.Layer(idle))
	p := &testProxy{http1: h1.NewServer(h, h1.DefaultConfig(), quietLog()), http2: h2.NewServer(h, h2.DefaultConfig(), quietLog())}
	t.Cleanup(func() { // after serveEach's cleanup has closed the listener
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.http1.Shutdown(ctx)
		p.http2.Shutdown(ctx)
	})
	p.addr = serveEach(t, func(c net.Conn) {
		info := ci
		res, rc, err := detect.Detect(c, time.Second)
		switch {
		case err == nil && res.Protocol == detect.HTTP1:
			p.http1.ServeConn(rc, &info)
		case err == nil && res.Protocol == detect.HTTP2:
			p.http2.ServeConn(rc, &info)
		default:
			c.Close()
		}
	}).String()
	return p
}

// serveEach runs serve on every connection to a new loopback port, until
// the test ends.
func serveEach(t testing.TB, serve func(net.Conn)) netip.AddrPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func outboundConn() stack.ConnInfo { return stack.ConnInfo{Direction: "outbound"} }

// httpBackend serves h over HTTP/1.1 and h2c prior knowledge on loopback.
func httpBackend(t *testing.T, h http.Handler) string {
	t.Helper()
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// The authority label is what discovery resolved (in the form discovery
// matches names), or "unknown": never the Host a client sent, which it can
// invent at will.
func TestAuthorityLabelIsWhatDiscoveryResolvedNotTheHost(t *testing.T) {
	backend := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, tt := range []struct {
		resolved, want string
	}{
		{"", "unknown"},
		{"web.test.svc.cluster.local:8081", "web.test.svc.cluster.local:8081"},
		{"Web.Test.svc.cluster.local.:8081", "web.test.svc.cluster.local:8081"},
		{"198.19.0.10:8081", "198.19.0.10:8081"},
	} {
		reg, _ := metrics.New(nil)
		up := newFixedUpstream(t, backend)
		up.service = tt.resolved
		proxy := startProxy(t, up, reg, outboundConn(), time.Hour)
		client := &http.Client{Timeout: 10 * time.Second}
		for i := range 50 {
			req, _ := http.NewRequest("GET", "http://"+proxy.addr+"/", nil)
			req.Host = fmt.Sprintf("invented-%d.example:80", i)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		want := `
# HELP request_total Total HTTP requests the proxy received.
# TYPE request_total counter
request_total{authority="` + tt.want + `",client_id="",direction="outbound",dst_namespace="",dst_pod="",dst_service="backend",dst_workload="",route_name="",server_id="",target_addr="` + backend + `",tls="no_identity"} 50
`
		if err := testutil.GatherAndCompare(reg.Gatherer(), strings.NewReader(want), "request_total"); err != nil {
			t.Errorf("resolved %q: %v", tt.resolved, err)
		}
	}
}

// Why the proxy failed a request (here a dial error naming an address) goes
// to the workload itself (outbound) and to meshed peers (inbound over mTLS),
// never to a client outside the mesh.
func TestProxyErrorDetailOnlyForTheWorkloadAndMeshedPeers(t *testing.T) {
	const reason = "dial tcp 10.1.2.3:8080: connect: connection refused"
	up := newFixedUpstream(t, "127.0.0.1:1")
	up.err = errors.New(reason)
	for _, tt := range []struct {
		name       string
		ci         stack.ConnInfo
		wantHeader string
		wantGRPC   string
	}{
		{"outbound", stack.ConnInfo{Direction: "outbound"}, reason, reason},
		{"inbound meshed", stack.ConnInfo{Direction: "inbound", ClientID: "spiffe://skein.local/ns/demo/sa/web"}, reason, reason},
		{"inbound unmeshed", stack.ConnInfo{Direction: "inbound"}, "", "Bad Gateway"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proxy := startProxy(t, up, nil, tt.ci, time.Hour)
			resp, err := http.Get("http://" + proxy.addr + "/plain")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 502 || string(body) != "Bad Gateway\n" || resp.Header.Get(proxyerror.Header) != tt.wantHeader {
				t.Errorf("HTTP: %d %q %s=%q, want 502 \"Bad Gateway\\n\" %s=%q",
					resp.StatusCode, body, proxyerror.Header, resp.Header.Get(proxyerror.Header), proxyerror.Header, tt.wantHeader)
			}

			resp = grpcCall(t, proxy.addr)
			if got := resp.Header.Get("Grpc-Message"); resp.Header.Get("Grpc-Status") != "14" || got != tt.wantGRPC ||
				resp.Header.Get(proxyerror.Header) != tt.wantHeader {
				t.Errorf("gRPC: grpc-status %q grpc-message %q %s=%q, want 14 %q %q",
					resp.Header.Get("Grpc-Status"), got, proxyerror.Header, resp.Header.Get(proxyerror.Header), tt.wantGRPC, tt.wantHeader)
			}
		})
	}
}

func TestRefusalWithoutMTLSAnswers503AndSaysWhy(t *testing.T) {
	up := newFixedUpstream(t, "127.0.0.1:1")
	up.err = fmt.Errorf("discovery has not answered for echo.test:8080; %w", stack.ErrRefusedWithoutMTLS)
	proxy := startProxy(t, up, nil, outboundConn(), time.Hour)
	const why = "discovery has not answered for echo.test:8080; refusing to send without mTLS"
	resp, err := http.Get("http://" + proxy.addr + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Skein-Proxy-Error") != why {
		t.Errorf("HTTP/1 request got %d with Skein-Proxy-Error %q, want 503 with %q", resp.StatusCode, resp.Header.Get("Skein-Proxy-Error"), why)
	}

	resp = grpcCall(t, proxy.addr)
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "14" || resp.Header.Get("Grpc-Message") != why {
		t.Errorf("gRPC request got %d grpc-status %q grpc-message %q, want 200, 14, %q",
			resp.StatusCode, resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message"), why)
	}
}

func TestUpstreamFailureAnswersGRPCUnavailable(t *testing.T) {
	up := newFixedUpstream(t, "127.0.0.1:1")
	up.err = fmt.Errorf("endpoint gone: %w", stack.ErrNoEndpoints)
	proxy := startProxy(t, up, nil, outboundConn(), time.Hour)
	resp := grpcCall(t, proxy.addr)
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "14" {
		t.Errorf("gRPC request got %d grpc-status %q, want 200 with grpc-status 14", resp.StatusCode, resp.Header.Get("Grpc-Status"))
	}
	resp, err := http.Get("http://" + proxy.addr + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("HTTP/1 request got %d, want 503 when there are no endpoints", resp.StatusCode)
	}
}

func TestHTTP2TrailersAndStreamingPassThrough(t *testing.T) {
	backend := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			t.Errorf("backend got HTTP/%d, want the client's HTTP/2", r.ProtoMajor)
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(200)
		w.Write(body)
		w.Header().Set("X-Sum", fmt.Sprint(len(body)))
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		if got := r.Trailer.Get("X-Client-Trailer"); got != "yes" {
			t.Errorf("backend saw request trailer %q, want yes", got)
		}
	}))
	reg, _ := metrics.New(nil)
	proxy := startProxy(t, newFixedUpstream(t, backend), reg, outboundConn(), time.Hour)

	req, _ := http.NewRequest("POST", "http://"+proxy.addr+"/svc/Method", io.NopCloser(strings.NewReader("hello")))
	req.Header.Set("Content-Type", "application/grpc")
	req.Trailer = http.Header{"X-Client-Trailer": {"yes"}}
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Errorf("body %q, want hello", body)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "5" {
		t.Errorf("trailer X-Sum = %q, want 5", got)
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("trailer Grpc-Status = %q, want 0", got)
	}
	want := `
# HELP response_total Total HTTP responses (or failures to get one).
# TYPE response_total counter
response_total{authority="unknown",classification="success",client_id="",direction="outbound",dst_namespace="",dst_pod="",dst_service="backend",dst_workload="",grpc_status="0",route_name="",server_id="",status_code="200",target_addr="` + backend + `",tls="no_identity"} 1
`
	if err := testutil.GatherAndCompare(reg.Gatherer(), strings.NewReader(want), "response_total"); err != nil {
		t.Error(err)
	}
}

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 10 * time.Second}
}

// grpcCall makes a unary gRPC-shaped call (a one-byte body) over h2c
// through proxy and returns the answer, its body read to the end.
func grpcCall(t *testing.T, proxy string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+proxy+"/svc/Method", strings.NewReader("x"))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestConnectBecomesAByteTunnel(t *testing.T) {
	backend, _ := tunnelBackend(t)
	proxy := startProxy(t, newFixedUpstream(t, backend), nil, outboundConn(), time.Hour)
	c, br := openTunnel(t, proxy.addr, "connect")
	fmt.Fprint(c, "ping through the tunnel")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(br)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if string(got) != "ping through the tunnel" {
		t.Errorf("tunnel echoed %q", got)
	}
}

// tunnelBackend answers each connection's first request with 200 (CONNECT)
// or 101 (an upgrade), then echoes bytes until the proxy closes its side;
// every closed connection is reported on the returned channel.
func tunnelBackend(t *testing.T) (addr string, closed <-chan struct{}) {
	t.Helper()
	ch := make(chan struct{}, 16)
	return serveEach(t, func(c net.Conn) {
		defer func() { c.Close(); ch <- struct{}{} }()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.Method == http.MethodConnect {
			if req.Host != "example.test:443" {
				fmt.Fprint(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
				return
			}
			fmt.Fprint(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		} else {
			fmt.Fprint(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		}
		io.Copy(c, br)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}).String(), ch
}

// openTunnel sends a CONNECT or an upgrade request and reads the answer's
// head; what follows is the tunnel.
func openTunnel(t *testing.T, proxy, kind string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	want := "HTTP/1.1 200"
	if kind == "connect" {
		fmt.Fprint(c, "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n")
	} else {
		fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		want = "HTTP/1.1 101"
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, want) {
		t.Fatalf("%s answered %q, %v; want %s", kind, status, err, want)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			return c, br
		}
	}
}

// echo sends one byte through the tunnel and reads it back.
func echo(c net.Conn, br *bufio.Reader) error {
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	b, err := br.ReadByte()
	if err == nil && b != 'x' {
		err = fmt.Errorf("echoed %q", b)
	}
	return err
}

func TestIdleTunnelsAreClosedOnBothSidesThroughTheEngines(t *testing.T) {
	for _, kind := range []string{"connect", "upgrade"} {
		t.Run(kind, func(t *testing.T) {
			backend, closed := tunnelBackend(t)
			const idle = 400 * time.Millisecond
			proxy := startProxy(t, newFixedUpstream(t, backend), nil, outboundConn(), idle)
			c, br := openTunnel(t, proxy.addr, kind)
			// Traffic for three idle timeouts keeps the tunnel open.
			for end := time.Now().Add(3 * idle); time.Now().Before(end); time.Sleep(idle / 10) {
				if err := echo(c, br); err != nil {
					t.Fatalf("busy tunnel broke: %v", err)
				}
			}
			// Silence closes it: the client reads EOF, the backend's side ends.
			if _, err := br.ReadByte(); err == nil {
				t.Errorf("idle tunnel: client read a byte, want the tunnel closed")
			}
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Error("idle tunnel: the backend's connection is still open")
			}
		})
	}
}

func TestShutdownWaitsForTunnelsThenClosesThem(t *testing.T) {
	for _, kind := range []string{"connect", "upgrade"} {
		t.Run(kind, func(t *testing.T) {
			backend, closed := tunnelBackend(t)
			proxy := startProxy(t, newFixedUpstream(t, backend), nil, outboundConn(), time.Hour)
			c, br := openTunnel(t, proxy.addr, kind)

			ctx, cancel := context.WithCancel(context.Background())
			shutdown := make(chan error, 1)
			go func() { shutdown <- proxy.http1.Shutdown(ctx) }()
			// Within the grace the tunnel keeps working, and Shutdown waits.
			for range 5 {
				if err := echo(c, br); err != nil {
					t.Fatalf("tunnel broke during the grace: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			select {
			case err := <-shutdown:
				t.Fatalf("Shutdown returned %v while a tunnel was open", err)
			default:
			}
			// The grace ends: the tunnel is closed on both sides.
			cancel()
			if err := <-shutdown; !errors.Is(err, context.Canceled) {
				t.Errorf("Shutdown returned %v, want context.Canceled", err)
			}
			if _, err := br.ReadByte(); err == nil {
				t.Error("tunnel still open after the grace")
			}
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Error("the backend's connection is still open after the grace")
			}
		})
	}
}

func TestShutdownReturnsOnceTunnelsEnd(t *testing.T) {
	backend, _ := tunnelBackend(t)
	proxy := startProxy(t, newFixedUpstream(t, backend), nil, outboundConn(), time.Hour)
	c, br := openTunnel(t, proxy.addr, "connect")
	shutdown := make(chan error, 1)
	go func() { shutdown <- proxy.http1.Shutdown(context.Background()) }()
	if err := echo(c, br); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case err := <-shutdown:
		if err != nil {
			t.Errorf("Shutdown returned %v, want nil once the last tunnel ended", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Shutdown still waiting after the last tunnel ended")
	}
}

// An HTTP/2 CONNECT (501 before the engines) is carried as a stream: the
// backend (net/http's HTTP/2 server) answers 200 and echoes the tunnel's
// bytes.
func TestHTTP2ConnectIsCarried(t *testing.T) {
	backend := httpBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.Host != "example.test:443" {
			http.Error(w, "want CONNECT example.test:443", http.StatusBadRequest)
			return
		}
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		w.WriteHeader(200)
		rc.Flush()
		buf := make([]byte, 1024)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	proxy := startProxy(t, newFixedUpstream(t, backend), nil, outboundConn(), time.Hour)
	client := h2.NewClient(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", proxy.addr)
	}, h2.DefaultConfig(), quietLog())
	defer client.Close()
	up, down := io.Pipe()
	req := &stack.Request{Method: "CONNECT", Authority: "example.test:443", ProtoMajor: 2, Body: &pipeBody{r: up}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.Serve(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Status != 200 {
		t.Fatalf("CONNECT answered %d, want 200", resp.Status)
	}
	for _, msg := range []string{"ping", "through the tunnel"} {
		if _, err := io.WriteString(down, msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != msg {
			t.Fatalf("tunnel echoed %q, %v; want %q", got, err, msg)
		}
	}
}

// pipeBody is a request body the test writes as it goes.
type pipeBody struct{ r *io.PipeReader }

func (b *pipeBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *pipeBody) Trailers() stack.Header     { return nil }
func (b *pipeBody) Close() error               { return b.r.Close() }
