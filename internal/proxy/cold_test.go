package proxy

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/outbound"
	"github.com/skeinmesh/skein/internal/proxy/tcp"
)

// BenchmarkColdPath measures one HTTP/1.1 exchange through the proxy with
// the caches warm and after they were flushed, against the opaque relay
// over the same sockets. A raw client and a raw backend (no engine) are
// the same in both, so the difference between relay and http1 is the
// HTTP path's. In situ (skein-bench) a proxy's code runs after fortio,
// the other proxy and the kernel have had the core, and costs several
// times what a warm micro-benchmark says; this is that gap on a bench.
// Read ns/req (the exchange alone), not ns/op (which includes the flush).
// Run with -cpu 1, as the proxy runs on one core:
//
//	go test -run - -bench ColdPath -benchtime 5000x -cpu 1 ./internal/proxy/
func BenchmarkColdPath(b *testing.B) {
	for _, path := range []string{"relay", "http1"} {
		for _, flush := range []struct {
			name  string
			bytes int
		}{
			{"warm", 0},
			{"4MiB", 4 << 20},   // past L1 and L2
			{"64MiB", 64 << 20}, // past L3 as well: from memory
		} {
			b.Run(path+"/"+flush.name, func(b *testing.B) { benchmarkColdPath(b, path == "http1", flush.bytes) })
		}
	}
}

func benchmarkColdPath(b *testing.B, http bool, flushBytes int) {
	backend := coldBackend(b)
	proxy := relayTo(b, backend)
	if http {
		proxy = httpProxyTo(b, backend)
	}
	c, err := net.Dial("tcp", proxy.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	exchange := func() {
		if _, err := c.Write(coldRequest); err != nil {
			b.Fatal(err)
		}
		if err := readHead(r); err != nil {
			b.Fatal(err)
		}
	}
	for range 100 {
		exchange() // connections, series and pools made once
	}
	flush := flushBuffer(b)
	var spent time.Duration
	for b.Loop() {
		for i := 0; i < flushBytes; i += 64 {
			flush[i]++
		}
		start := time.Now()
		exchange()
		spent += time.Since(start)
	}
	b.ReportMetric(float64(spent.Nanoseconds())/float64(b.N), "ns/req")
}

// flushBuffer is 64 MiB on small pages, so that writing it evicts the TLB
// too whatever the machine's transparent huge page setting.
func flushBuffer(b *testing.B) []byte {
	buf, err := syscall.Mmap(-1, 0, 64<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { syscall.Munmap(buf) })
	if err := syscall.Madvise(buf, 15 /* MADV_NOHUGEPAGE */); err != nil {
		b.Fatal(err)
	}
	return buf
}

const coldAuthority = "echo.test.svc.cluster.local:8080"

// coldRequest is what fortio sends in skein-bench.
var coldRequest = []byte("GET / HTTP/1.1\r\nHost: " + coldAuthority + "\r\nUser-Agent: fortio.org/fortio-1.69.0\r\n\r\n")

// coldBackend answers every request head with an empty 200.
func coldBackend(t testing.TB) netip.AddrPort {
	return serveEach(t, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for readHead(r) == nil {
			if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDate: Wed, 02 Dec 2026 12:00:00 GMT\r\n\r\n")); err != nil {
				return
			}
		}
	})
}

// relayTo relays each connection to backend byte for byte, as the proxy
// does for an opaque port.
func relayTo(t testing.TB, backend netip.AddrPort) netip.AddrPort {
	return serveEach(t, func(c net.Conn) {
		up, err := net.Dial("tcp", backend.String())
		if err != nil {
			c.Close()
			return
		}
		tcp.Forward(context.Background(), c, up, nil)
	})
}

// httpProxyTo serves the outbound stack (without tap) towards backend.
func httpProxyTo(t testing.TB, backend netip.AddrPort) netip.AddrPort {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	out := outbound.New(ctx, staticResolver{coldAuthority: {{Addr: backend, Labels: map[string]string{"service": "echo"}}}},
		balance.DefaultOptions(), nil, quietLog())
	reg, _ := metrics.New(nil)
	return serveEngines(t, outboundStack(out, stackConfig{metrics: reg, tunnelIdleTimeout: time.Hour, engines: testEngines(), log: quietLog()}))
}

// readHead reads up to the blank line that ends a message head.
func readHead(r *bufio.Reader) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if bytes.Equal(line, []byte("\r\n")) {
			return nil
		}
	}
}
