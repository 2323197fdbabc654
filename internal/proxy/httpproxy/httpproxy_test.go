package httpproxy

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

	"github.com/skeinmesh/skein/internal/proxy/metrics"
)

// fixedUpstream sends everything to one address.
type fixedUpstream struct {
	addr       string
	service    string // what discovery "resolved"; empty for none
	transports *Transports
	err        error
}

func newFixedUpstream(addr string) *fixedUpstream {
	var d net.Dialer
	return &fixedUpstream{addr: addr, transports: NewTransports(d.DialContext)}
}

func (u *fixedUpstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if u.err != nil {
		return nil, u.err
	}
	out := To(req, u.addr)
	if ri := RequestInfoFrom(req.Context()); ri != nil {
		ri.Endpoint.Addr = netip.MustParseAddrPort(u.addr)
		ri.Endpoint.Labels = map[string]string{"service": "backend"}
		ri.Service = u.service
	}
	return u.transports.For(req).RoundTrip(out)
}

func (u *fixedUpstream) DialTunnel(ctx context.Context, req *http.Request) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", u.addr)
}

// startProxy serves the handler chain on a loopback listener and returns
// its address.
func startProxy(t *testing.T, up Upstream, reg *metrics.Registry) string {
	t.Helper()
	return startProxyFor(t, up, reg, ConnInfo{Direction: "outbound"})
}

// startProxyFor is startProxy for connections described by ci (a copy per
// connection).
func startProxyFor(t *testing.T, up Upstream, reg *metrics.Registry, ci ConnInfo) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := NewServer(NewHandler(Config{Direction: ci.Direction, Upstream: up, Metrics: reg, Log: log}), log)
	return serveOnLoopback(t, srv, ci)
}

// serveOnLoopback serves srv on a loopback port, each connection with a
// copy of ci, until the test ends; it returns the port's address.
func serveOnLoopback(t *testing.T, srv *Server, ci ConnInfo) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			info := ci
			srv.ServeConn(c, &info)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// h2cBackend serves h over HTTP/1.1 and h2c prior knowledge.
func h2cBackend(t *testing.T, h http.Handler) string {
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

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 10 * time.Second}
}

func TestHTTP2TrailersAndStreamingPassThrough(t *testing.T) {
	backend := h2cBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	proxy := startProxy(t, newFixedUpstream(backend), reg)

	req, _ := http.NewRequest("POST", "http://"+proxy+"/svc/Method", io.NopCloser(strings.NewReader("hello")))
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

// The authority label is what discovery resolved (in the form discovery
// matches names), or "unknown": never the Host a client sent, which it can
// invent at will.
func TestAuthorityLabelIsWhatDiscoveryResolvedNotTheHost(t *testing.T) {
	backend := h2cBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, tt := range []struct {
		resolved, want string
	}{
		{"", "unknown"},
		{"web.test.svc.cluster.local:8081", "web.test.svc.cluster.local:8081"},
		{"Web.Test.svc.cluster.local.:8081", "web.test.svc.cluster.local:8081"},
		{"198.19.0.10:8081", "198.19.0.10:8081"},
	} {
		reg, _ := metrics.New(nil)
		up := newFixedUpstream(backend)
		up.service = tt.resolved
		proxy := startProxy(t, up, reg)
		client := &http.Client{Timeout: 10 * time.Second}
		for i := range 50 {
			req, _ := http.NewRequest("GET", "http://"+proxy+"/", nil)
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

func TestUpstreamFailureAnswersGRPCUnavailable(t *testing.T) {
	up := newFixedUpstream("127.0.0.1:1")
	up.err = fmt.Errorf("endpoint gone: %w", ErrNoEndpoints)
	proxy := startProxy(t, up, nil)

	resp := grpcCall(t, proxy)
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "14" {
		t.Errorf("gRPC request got %d grpc-status %q, want 200 with grpc-status 14", resp.StatusCode, resp.Header.Get("Grpc-Status"))
	}

	resp, err := http.Get("http://" + proxy + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("HTTP/1 request got %d, want 503 when there are no endpoints", resp.StatusCode)
	}
}

// Why the proxy failed a request (here a dial error naming an address) goes
// to the workload itself (outbound) and to meshed peers (inbound over mTLS),
// never to a client outside the mesh.
func TestProxyErrorDetailOnlyForTheWorkloadAndMeshedPeers(t *testing.T) {
	const reason = "dial tcp 10.1.2.3:8080: connect: connection refused"
	up := newFixedUpstream("127.0.0.1:1")
	up.err = errors.New(reason)
	for _, tt := range []struct {
		name       string
		ci         ConnInfo
		wantHeader string
		wantGRPC   string
	}{
		{"outbound", ConnInfo{Direction: "outbound"}, reason, reason},
		{"inbound meshed", ConnInfo{Direction: "inbound", ClientID: "spiffe://skein.local/ns/demo/sa/web"}, reason, reason},
		{"inbound unmeshed", ConnInfo{Direction: "inbound"}, "", "Bad Gateway"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proxy := startProxyFor(t, up, nil, tt.ci)
			resp, err := http.Get("http://" + proxy + "/plain")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 502 || string(body) != "Bad Gateway\n" || resp.Header.Get(ErrorHeader) != tt.wantHeader {
				t.Errorf("HTTP: %d %q %s=%q, want 502 \"Bad Gateway\\n\" %s=%q",
					resp.StatusCode, body, ErrorHeader, resp.Header.Get(ErrorHeader), ErrorHeader, tt.wantHeader)
			}

			resp = grpcCall(t, proxy)
			if got := resp.Header.Get("Grpc-Message"); resp.Header.Get("Grpc-Status") != "14" || got != tt.wantGRPC ||
				resp.Header.Get(ErrorHeader) != tt.wantHeader {
				t.Errorf("gRPC: grpc-status %q grpc-message %q %s=%q, want 14 %q %q",
					resp.Header.Get("Grpc-Status"), got, ErrorHeader, resp.Header.Get(ErrorHeader), tt.wantGRPC, tt.wantHeader)
			}
		})
	}
}

func TestConnectBecomesAByteTunnel(t *testing.T) {
	// The upstream is an HTTP CONNECT proxy that then echoes bytes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || req.Method != http.MethodConnect || req.Host != "example.test:443" {
			fmt.Fprintf(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		io.Copy(c, br)
	}()
	proxy := startProxy(t, newFixedUpstream(ln.Addr().String()), nil)

	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n")
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("CONNECT answered %q, %v", status, err)
	}
	for line, _ := br.ReadString('\n'); line != "\r\n" && line != ""; line, _ = br.ReadString('\n') {
	}
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

func TestRefusalWithoutMTLSAnswers503AndSaysWhy(t *testing.T) {
	up := newFixedUpstream("127.0.0.1:1")
	up.err = fmt.Errorf("discovery has not answered for echo.test:8080; %w", ErrRefusedWithoutMTLS)
	proxy := startProxy(t, up, nil)
	const why = "discovery has not answered for echo.test:8080; refusing to send without mTLS"

	resp, err := http.Get("http://" + proxy + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Skein-Proxy-Error") != why {
		t.Errorf("HTTP/1 request got %d with Skein-Proxy-Error %q, want 503 with %q", resp.StatusCode, resp.Header.Get("Skein-Proxy-Error"), why)
	}

	resp = grpcCall(t, proxy)
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "14" || resp.Header.Get("Grpc-Message") != why {
		t.Errorf("gRPC request got %d grpc-status %q grpc-message %q, want 200, 14, %q",
			resp.StatusCode, resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message"), why)
	}
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
