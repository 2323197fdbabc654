package h1

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

func TestSmugglingAttemptsAre400AndReachNothing(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "reached") })
	p := startProxy(t, Config{}, be.hostPort())
	for _, tc := range []struct{ name, req string }{
		{"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"differing Content-Lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!"},
		{"signed Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello"},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"},
		{"chunk size with bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"},
		{"obs-fold that looks like a field", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n X-B: 2\r\n\r\n"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n"},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"},
		{"invalid field name", "GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n"},
		{"NUL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n"},
		{"gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{"identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"},
		{"chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"chunked in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"bare LF in the head", "GET / HTTP/1.1\nHost: a\n\n"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n"},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
		{"malformed request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, p.addr)
			_, _ = io.WriteString(c, tc.req)
			resp := readResponse(t, c, "GET")
			if resp.StatusCode != 400 {
				t.Errorf("answered %d, want 400", resp.StatusCode)
			}
			if rest, _ := io.ReadAll(resp.Body); len(rest) != 0 {
				t.Errorf("400 came with a body %q", rest)
			}
			if n, err := c.Read(make([]byte, 1)); err == nil {
				t.Errorf("connection still open after a refused request (read %d bytes)", n)
			}
		})
	}
	if n := be.hits.Load(); n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}
}

func TestOtherRefusals(t *testing.T) {
	var handled atomic.Int32
	p := startServer(t, Config{MaxRequestLineBytes: 1 << 10}, stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		handled.Add(1)
		return &stack.Response{Status: 200, Body: stack.NoBody}, nil
	}), nil)
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"header block over 64 KiB", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-Fill: "+strings.Repeat("f", 1000)+"\r\n", 66) + "\r\n", 431},
		{"request line too long", "GET /" + strings.Repeat("p", 2000) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"Expect other than 100-continue", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, p.addr)
			_, _ = io.WriteString(c, tc.req)
			if resp := readResponse(t, c, "GET"); resp.StatusCode != tc.status {
				t.Errorf("answered %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	if n := handled.Load(); n != 0 {
		t.Errorf("the handler ran %d times for refused requests", n)
	}
}

// closedByServer waits for the server to close c, reading and dropping
// what comes; it fails the test if that takes more than 15 s.
func closedByServer(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the connection")
	}
	return got
}

func TestSlowlorisIsCut(t *testing.T) {
	for _, c := range []struct{ name, start string }{
		{"head", "GET / HTTP/1.1\r\nHost: a\r\n"},
		// The empty lines before a request line are skipped; they are no
		// whole head, and must not spare the rest its deadline.
		{"head after empty lines", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) { testSlowloris(t, c.start) })
	}
}

func testSlowloris(t *testing.T, start string) {
	var handled atomic.Int32
	p := startServer(t, Config{ReadHeaderTimeout: 300 * time.Millisecond}, stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		handled.Add(1)
		return &stack.Response{Status: 200, Body: stack.NoBody}, nil
	}), nil)
	c := dialRaw(t, p.addr)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// One header byte every 20 ms: each byte is in time, the head never is.
		_, _ = io.WriteString(c, start)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := io.WriteString(c, "x"); err != nil {
				return
			}
		}
	}()
	if got := closedByServer(t, c); len(got) != 0 {
		t.Errorf("slowloris client got %q, want the connection closed without an answer", got)
	}
	if n := handled.Load(); n != 0 {
		t.Errorf("the handler ran %d times", n)
	}
}

// readDeadlineConn counts the read deadlines set on a connection.
type readDeadlineConn struct {
	net.Conn
	sets *atomic.Int32
}

func (c readDeadlineConn) SetReadDeadline(t time.Time) error {
	c.sets.Add(1)
	return c.Conn.SetReadDeadline(t)
}

// Each deadline set is a runtime timer changed. A request that arrives
// whole needs only the idle deadline it was waited for under: its head is
// read from the buffer, and without a body nothing else is read.
func TestWholeRequestsSetOnlyTheIdleDeadline(t *testing.T) {
	srv := NewServer(stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		return &stack.Response{Status: 204, Body: stack.NoBody}, nil
	}), Config{}, quietLog())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	var sets atomic.Int32
	go func() {
		c, err := ln.Accept()
		if err == nil {
			srv.ServeConn(readDeadlineConn{c, &sets}, nil)
		}
	}()
	c := dialRaw(t, ln.Addr().String())
	const requests = 20
	for range requests {
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		readAll(t, readResponse(t, c, "GET"))
	}
	// One per request, and perhaps the one the next request is awaited
	// under; idle, header and clearing deadlines made it 3 per request.
	if n := sets.Load(); n > requests+1 {
		t.Errorf("%d requests that came whole set %d read deadlines, want at most %d", requests, n, requests+1)
	}
}

func TestStalledRequestBodyIsCut(t *testing.T) {
	bodyErr := make(chan error, 1)
	p := startServer(t, Config{BodyTimeout: 300 * time.Millisecond}, stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		_, err := io.ReadAll(r.Body)
		bodyErr <- err
		return &stack.Response{Status: 200, Body: stack.NoBody}, nil
	}), nil)
	c := dialRaw(t, p.addr)
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
	closedByServer(t, c)
	var ne net.Error
	if err := <-bodyErr; !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("handler's body read ended with %v, want a timeout", err)
	}
}

func TestIdleKeepAliveConnectionIsClosed(t *testing.T) {
	p := startServer(t, Config{IdleTimeout: 200 * time.Millisecond}, okHandler(), nil)
	c := dialRaw(t, p.addr)
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp := readResponse(t, c, "GET"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	closedByServer(t, c)
}

func okHandler() stack.Handler {
	return stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		_, _ = io.Copy(io.Discard, r.Body)
		return &stack.Response{Status: 200, Header: stack.Header{{Name: "content-type", Value: "text/plain"}}, Body: stack.BytesBody([]byte("ok"), nil)}, nil
	})
}
