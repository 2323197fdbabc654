package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// badClient misbehaves on a connection and then reads until the proxy
// closes it; it returns what it read.
type badClient struct {
	name string
	act  func(c net.Conn) error
	// want is a prefix the answer must start with; empty accepts a plain close.
	want string
}

func TestBadInputIsRefusedWhileOthersKeepFlowing(t *testing.T) {
	s := getShared(t)
	target := addrPort(s.vip, portHTTP).String()
	proxyPID := s.proxies["client"].cmd.Process.Pid
	rssBefore := rssKiB(t, proxyPID)

	// Steady good traffic from the same client during the whole test.
	client, _ := grpcConn(t, s.client, addrPort(s.vip, portGRPC).String())
	stop := make(chan struct{})
	var good, failed atomic.Int64
	var firstErr atomic.Value
	var load sync.WaitGroup
	for range 2 {
		load.Add(1)
		go func() {
			defer load.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{FillServerId: true})
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					good.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	random := make([]byte, 64<<10)
	rand.Read(random)
	bigHeader := "GET /id HTTP/1.1\r\nHost: web\r\nX-Big: " + strings.Repeat("a", 1<<20) + "\r\n\r\n"
	cases := []badClient{
		{name: "random bytes", act: func(c net.Conn) error { _, err := c.Write(random); return err }},
		{name: "truncated HTTP/2 preface", act: func(c net.Conn) error { _, err := c.Write([]byte("PRI * HTTP/2.0\r\n")); return err }},
		{name: "HTTP/2 preface then garbage frames", act: func(c net.Conn) error {
			_, err := c.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), random[:4096]...))
			return err
		}},
		{name: "1 MiB header", want: "HTTP/1.1 431", act: func(c net.Conn) error {
			c.Write([]byte(bigHeader)) // the proxy may stop reading early
			return nil
		}},
		{name: "one byte a second", act: func(c net.Conn) error {
			req := "GET /id HTTP/1.1\r\nHost: web\r\n\r\n"
			for i := range len(req) {
				if _, err := c.Write([]byte{req[i]}); err != nil {
					return nil // closed by the proxy: what we want
				}
				time.Sleep(time.Second)
			}
			return nil
		}},
	}
	// bound is how long any bad client may hold a connection: detection
	// and header timeouts plus slack.
	const bound = 25 * time.Second
	var wg sync.WaitGroup
	for _, bc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := dialer(s.client)(ctx, "tcp", target)
			cancel()
			if err != nil {
				t.Errorf("%s: dial: %v", bc.name, err)
				return
			}
			defer c.Close()
			start := time.Now()
			c.SetDeadline(start.Add(bound))
			done := make(chan []byte)
			go func() {
				got, _ := io.ReadAll(c)
				done <- got
			}()
			if err := bc.act(c); err != nil {
				t.Logf("%s: write: %v", bc.name, err)
			}
			got := <-done
			elapsed := time.Since(start)
			if elapsed >= bound {
				t.Errorf("%s: connection still open after %v", bc.name, bound)
			}
			if bc.want != "" && !strings.HasPrefix(string(got), bc.want) {
				t.Errorf("%s: got %q, want an answer starting %q", bc.name, truncate(got, 80), bc.want)
			}
			t.Logf("%s: closed after %v with %q", bc.name, elapsed.Round(time.Millisecond), truncate(got, 40))
		}()
	}
	wg.Wait()
	close(stop)
	load.Wait()

	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d good calls failed while bad clients were served; first: %v", n, n+good.Load(), firstErr.Load())
	}
	if good.Load() < 100 {
		t.Errorf("only %d good calls completed: traffic did not keep flowing", good.Load())
	}
	rssAfter := rssKiB(t, proxyPID)
	t.Logf("client proxy RSS %d KiB before, %d KiB after; %d good calls", rssBefore, rssAfter, good.Load())
	if rssAfter-rssBefore > 64<<10 {
		t.Errorf("client proxy grew by %d KiB serving bad clients, want under 64 MiB", rssAfter-rssBefore)
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// rssKiB reads a process's resident set size.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}
