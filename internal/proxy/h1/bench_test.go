package h1

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawUpstream is an HTTP/1.1 server that allocates nothing per request:
// it reads a head (and, for a chunked request, the body up to its last
// chunk) and answers with a fixed response. Only the proxy allocates.
func rawUpstream(tb testing.TB, response string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveRaw(c, response)
		}
	}()
	return ln.Addr().String()
}

func serveRaw(c net.Conn, response string) {
	defer func() { _ = c.Close() }()
	br := bufio.NewReaderSize(c, 64<<10)
	resp := []byte(response)
	var tail []byte
	for {
		chunked := false
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) == 2 {
				break
			}
			if bytes.HasPrefix(line, []byte("Transfer-Encoding: chunked")) {
				chunked = true
			}
		}
		if chunked {
			tail = tail[:0]
			for !bytes.HasSuffix(tail, []byte("\r\n0\r\n\r\n")) {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				tail = append(tail, line...)
				tail = append(tail[:0], tail[max(0, len(tail)-8):]...)
			}
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

// keepAliveClient sends one fixed request after another on one connection
// and reads each fixed-length answer.
type keepAliveClient struct {
	c    net.Conn
	req  []byte
	resp []byte
}

func newKeepAliveClient(tb testing.TB, addr, req string, respLen int) *keepAliveClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return &keepAliveClient{c: c, req: []byte(req), resp: make([]byte, respLen)}
}

func (k *keepAliveClient) do(tb testing.TB) {
	if _, err := k.c.Write(k.req); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.ReadFull(k.c, k.resp); err != nil {
		tb.Fatal(err)
	}
}

const (
	upstreamOK  = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"
	proxiedOK   = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"
	getRequest  = "GET /api/items?page=2 HTTP/1.1\r\nHost: web.test:8080\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n\r\n"
	chunkedHead = "POST /upload HTTP/1.1\r\nHost: web.test:8080\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)

func chunkedPost() string {
	var b strings.Builder
	b.WriteString(chunkedHead)
	for range 4 {
		b.WriteString("1000\r\n" + strings.Repeat("x", 4096) + "\r\n")
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

func BenchmarkProxiedGETKeepAlive(b *testing.B) {
	p := startProxy(b, Config{}, rawUpstream(b, upstreamOK))
	k := newKeepAliveClient(b, p.addr, getRequest, len(proxiedOK))
	k.do(b)
	if string(k.resp) != proxiedOK {
		b.Fatalf("proxied answer %q", k.resp)
	}
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for b.Loop() {
		k.do(b)
	}
}

// reportCPU reports the process's CPU time (user and system: client,
// proxy and upstream together) per operation, as cpu-ns/op.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkProxiedChunkedPOST(b *testing.B) {
	p := startProxy(b, Config{}, rawUpstream(b, upstreamOK))
	k := newKeepAliveClient(b, p.addr, chunkedPost(), len(proxiedOK))
	k.do(b)
	b.SetBytes(4 * 4096)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for b.Loop() {
		k.do(b)
	}
}

// The two parsers side by side: why the engine parses heads itself.
func BenchmarkParseRequestHead(b *testing.B) {
	head := []byte(getRequest)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := parseRequest(head); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRequestHeadNetHTTP(b *testing.B) {
	r := strings.NewReader(getRequest)
	br := bufio.NewReader(r)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(getRequest)
		br.Reset(r)
		if _, err := http.ReadRequest(br); err != nil {
			b.Fatal(err)
		}
	}
}

// proxiedGETAllocs is the allocation budget of one proxied keep-alive GET
// (server, handler, client, both directions), from what the engine reaches.
const proxiedGETAllocs = 7

func TestProxiedGETAllocationBudget(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	p := startProxy(t, Config{}, rawUpstream(t, upstreamOK))
	k := newKeepAliveClient(t, p.addr, getRequest, len(proxiedOK))
	k.do(t)
	allocs := testing.AllocsPerRun(200, func() { k.do(t) })
	t.Logf("%.1f allocations per proxied GET", allocs)
	if allocs > proxiedGETAllocs {
		t.Errorf("%.1f allocations per proxied keep-alive GET, budget %d", allocs, proxiedGETAllocs)
	}
}

// BenchmarkNetHTTPProxiedGETKeepAlive is the same GET through what the
// engine replaces (net/http's server, httputil.ReverseProxy and
// Transport), with the same client and upstream: the figure to compare.
func BenchmarkNetHTTPProxiedGETKeepAlive(b *testing.B) {
	upstream := rawUpstream(b, upstreamOK)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = "http", upstream
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 100, DisableCompression: true},
	}
	srv := httptest.NewServer(rp)
	b.Cleanup(srv.Close)
	k := newKeepAliveClient(b, strings.TrimPrefix(srv.URL, "http://"), getRequest, 0)
	if _, err := k.c.Write(k.req); err != nil {
		b.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(k.c), nil)
	if err != nil {
		b.Fatal(err)
	}
	head, _ := httputil.DumpResponse(resp, true)
	k.resp = make([]byte, len(head))
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for b.Loop() {
		k.do(b)
	}
}
