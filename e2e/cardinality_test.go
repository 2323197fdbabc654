package e2e

import (
	"bufio"
	"bytes"
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

	"github.com/skeinmesh/skein/internal/netns"
)

// seriesCount counts the series a proxy's /metrics lists (every sample
// line), read from inside h.
func seriesCount(t *testing.T, h *netns.Host, ip string) int {
	t.Helper()
	resp, err := httpClient(h).Get("http://" + ip + ":4191/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// hostFlood sends n requests from h to server, each with its own Host
// (made by host(i)): GET /id on one HTTP/1.1 keep-alive connection to the
// HTTP port, and gRPC UnaryCall (an empty SimpleRequest) on one HTTP/2 prior-knowledge connection to
// the gRPC port (8 streams at a time). Every answer must be a success.
func hostFlood(t *testing.T, h *netns.Host, server netip.Addr, n int, host func(i int) string) {
	t.Helper()
	var opened atomic.Int32
	var h1, h2 http.Protocols
	h1.SetHTTP1(true)
	h2.SetUnencryptedHTTP2(true)
	emptyMessage := []byte{0, 0, 0, 0, 0} // an uncompressed, empty gRPC message
	for _, p := range []struct {
		name      string
		port      uint16
		protocols *http.Protocols
		workers   int
		request   func() *http.Request
	}{
		{"HTTP/1.1", portHTTP, &h1, 1, func() *http.Request {
			req, _ := http.NewRequest("GET", "http://backend/id", nil)
			return req
		}},
		{"HTTP/2", portGRPC, &h2, 8, func() *http.Request {
			req, _ := http.NewRequest("POST", "http://backend/grpc.testing.TestService/UnaryCall", bytes.NewReader(emptyMessage))
			req.Header.Set("Content-Type", "application/grpc")
			req.Header.Set("TE", "trailers")
			return req
		}},
	} {
		target := addrPort(server, p.port).String()
		tr := &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				opened.Add(1)
				return h.DialContext(ctx, network, target)
			},
			Protocols: p.protocols, MaxConnsPerHost: 1, DisableCompression: true,
		}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		var wg sync.WaitGroup
		errs := make(chan error, p.workers)
		for w := range p.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += p.workers {
					req := p.request()
					req.Host = host(i)
					resp, err := client.Do(req)
					if err != nil {
						errs <- fmt.Errorf("%s request %d: %w", p.name, i, err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					grpcStatus := resp.Trailer.Get("Grpc-Status")
					if resp.StatusCode != http.StatusOK || p.port == portGRPC && grpcStatus != "0" {
						errs <- fmt.Errorf("%s request %d (Host %s): %s, grpc-status %q %v %v", p.name, i, req.Host, resp.Status, grpcStatus, resp.Header, resp.Trailer)
						return
					}
				}
			}()
		}
		wg.Wait()
		tr.CloseIdleConnections()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	// One connection per protocol: the Hosts all came on the same ones.
	if got := opened.Load(); got != 2 {
		t.Fatalf("%d requests took %d connections, want one per protocol (2)", n, got)
	}
}

// An unmeshed client that invents a Host per request must not make a meshed
// server's proxy keep a series (or memory) per Host: the authority label is
// what discovery resolved, and inbound that is nothing ("unknown").
func TestInventedHostsDoNotGrowTheProxysMetrics(t *testing.T) {
	s := getShared(t)
	server := s.servers[0]
	pid := s.proxies[server.Name].cmd.Process.Pid

	// Ten requests make every series this traffic can have; 2,000 more
	// with one Host bring the proxy's heap to its working size.
	hostFlood(t, s.plain, server.IP, 10, func(i int) string { return fmt.Sprintf("warm-%d.example", i) })
	want := seriesCount(t, server, "127.0.0.1")
	hostFlood(t, s.plain, server.IP, 2000, func(int) string { return "warm.example" })
	rssBefore := rssKiB(t, pid)

	const n = 10_000
	start := time.Now()
	hostFlood(t, s.plain, server.IP, n, func(i int) string { return fmt.Sprintf("invented-%d.example:%d", i, 1+i%65535) })
	got := seriesCount(t, server, "127.0.0.1")
	rssAfter := rssKiB(t, pid)
	t.Logf("%d invented Hosts over HTTP/1.1 and HTTP/2 in %v: %d series before, %d after; RSS %d KiB -> %d KiB",
		n, time.Since(start).Round(time.Millisecond), want, got, rssBefore, rssAfter)
	if got != want {
		t.Errorf("server proxy lists %d series after %d invented Hosts, want %d as after 10 requests", got, n, want)
	}
	inbound := scrape(t, server).sum("request_total", map[string]string{"direction": "inbound", "authority": "unknown"})
	if inbound < 2*(n+2010) {
		t.Errorf("request_total{direction=inbound,authority=unknown} is %v, want at least the %d requests sent", inbound, 2*(n+2010))
	}
	if grew := rssAfter - rssBefore; grew >= 2<<10 {
		t.Errorf("server proxy RSS grew by %d KiB over %d invented Hosts, want under 2 MiB", grew, n)
	}
}

// An unmeshed client that dials port after port of a meshed server, where
// nothing listens, must not make the server's proxy keep series per port:
// target_addr names only ports the application listens on.
func TestPortSweepDoesNotGrowTheProxysMetrics(t *testing.T) {
	s := getShared(t)
	server := s.servers[1]
	const first = 20000
	sweep := func(from, to int) {
		t.Helper()
		for port := from; port < to; port++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := s.plain.DialContext(ctx, "tcp", addrPort(server.IP, uint16(port)).String())
			cancel()
			if err != nil {
				t.Fatalf("port %d: %v", port, err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: sweep\r\nConnection: close\r\n\r\n")
			got, _ := io.ReadAll(c)
			c.Close()
			// The server's proxy accepts, cannot reach the application, and
			// answers a bare 502 (the client is not meshed).
			if !bytes.HasPrefix(got, []byte("HTTP/1.1 502 Bad Gateway\r\n")) {
				t.Fatalf("port %d: got %q, want a 502", port, truncate(got, 80))
			}
		}
	}
	sweep(first, first+2)
	want := seriesCount(t, server, "127.0.0.1")
	before := scrape(t, server).sum("tcp_open_total", map[string]string{"direction": "inbound", "target_addr": "unknown"})
	const n = 500
	sweep(first+2, first+2+n)
	got := seriesCount(t, server, "127.0.0.1")
	opened := scrape(t, server).sum("tcp_open_total", map[string]string{"direction": "inbound", "target_addr": "unknown"}) - before
	t.Logf("%d ports swept: %d series before, %d after; tcp_open_total{target_addr=unknown} +%v", n, want, got, opened)
	if got != want {
		t.Errorf("server proxy lists %d series after %d more ports were dialled, want %d", got, n, want)
	}
	if opened != n {
		t.Errorf("tcp_open_total{direction=inbound,target_addr=unknown} rose by %v, want %d", opened, n)
	}
}
