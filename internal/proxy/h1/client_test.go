package h1

import (
	"bufio"
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

func newTestClient(addr string) *Client {
	return NewClient(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}, Config{}, quietLog())
}

func get(path string) *stack.Request {
	return &stack.Request{Method: "GET", Scheme: "http", Authority: "web.test", Path: path, ProtoMajor: 1, Body: stack.NoBody, Conn: &stack.ConnInfo{}}
}

func TestClientDialFailureIsNotSent(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	_ = ln.Close()
	c := newTestClient(addr)
	defer c.Close()
	_, err := c.Serve(context.Background(), get("/"))
	if err == nil || !stack.IsNotSent(err) {
		t.Errorf("dial failure: %v, want a NotSent error", err)
	}
}

// onceServer answers each request on a connection with "ok" and then
// closes the connection without saying so, as a server whose keep-alive
// timeout fired would. closed counts the connections it has closed: it
// closes after its answer, so after the client may have read it.
func onceServer(t *testing.T) (addr string, conns, closed *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	conns, closed = new(atomic.Int32), new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer func() { _ = c.Close(); closed.Add(1) }()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	return ln.Addr().String(), conns, closed
}

func TestClientRetriesOnlyBodilessRequestsOnStaleConnections(t *testing.T) {
	addr, conns, _ := onceServer(t)
	c := newTestClient(addr)
	defer c.Close()
	gotConn := 0
	for i := range 3 {
		req := get("/")
		req.GotConn = func() { gotConn++ }
		resp, err := c.Serve(context.Background(), req)
		if err != nil {
			t.Fatalf("GET %d on a connection the server closed: %v", i, err)
		}
		if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
			t.Fatalf("GET %d: %q", i, b)
		}
		time.Sleep(20 * time.Millisecond) // let the server's close arrive
	}
	if gotConn != 3 {
		t.Errorf("GotConn called %d times for 3 requests, want 3", gotConn)
	}
	if n := conns.Load(); n != 4 && n != 3 {
		t.Errorf("%d connections for 3 requests", n)
	}
	for _, body := range []stack.Body{stack.BytesBody([]byte("payload"), nil), stack.NoBody} {
		resp, err := c.Serve(context.Background(), get("/"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		time.Sleep(20 * time.Millisecond)
		post := get("/")
		post.Method = "POST"
		post.Body = body
		if _, err := c.Serve(context.Background(), post); err == nil {
			t.Error("POST on a stale connection succeeded: the upstream may have seen it, it must not be sent twice")
		} else if stack.IsNotSent(err) {
			t.Errorf("POST on a stale connection: %v is NotSent, but its bytes went out", err)
		}
	}
}

func TestClientCancelAndEarlyCloseReachTheServer(t *testing.T) {
	serverSaw := make(chan error, 2)
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			serverSaw <- r.Context().Err()
		case <-time.After(time.Minute):
			serverSaw <- errors.New("no cancel within a minute")
		}
	})
	c := newTestClient(be.hostPort())
	defer c.Close()

	ctx, cancel := context.WithCancel(context.Background())
	resp, err := c.Serve(ctx, get("/cancel"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-serverSaw; !errors.Is(err, context.Canceled) {
		t.Errorf("after ctx cancel the server saw %v", err)
	}
	if _, err := resp.Body.Read(buf); err == nil {
		t.Error("body still readable after cancel")
	}

	resp, err = c.Serve(context.Background(), get("/close"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if err := <-serverSaw; !errors.Is(err, context.Canceled) {
		t.Errorf("after an early Body.Close the server saw %v", err)
	}
	if !c.CloseIdle() {
		t.Error("connections left after the abandoned requests; they must be closed, not pooled")
	}
}

func TestClientSkipsInterimAnswersAndReadsCloseDelimited(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer func() { _ = c.Close() }()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil the end")
	}()
	cl := newTestClient(ln.Addr().String())
	defer cl.Close()
	resp, err := cl.Serve(context.Background(), get("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "until the end" || resp.Status != 200 || resp.Header.Get("x-a") != "1" {
		t.Errorf("got %d %v %q %v", resp.Status, resp.Header, b, err)
	}
	if !cl.CloseIdle() {
		t.Error("a close-delimited connection went back to the pool")
	}
}

func TestClientResponseHeaderLimit(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer func() { _ = c.Close() }()
		_, _ = http.ReadRequest(bufio.NewReader(c))
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		for range 70 {
			_, _ = io.WriteString(c, "X-Fill: "+strings.Repeat("f", 1000)+"\r\n")
		}
	}()
	cl := newTestClient(ln.Addr().String())
	defer cl.Close()
	if _, err := cl.Serve(context.Background(), get("/")); !errors.Is(err, errHeadTooLarge) {
		t.Errorf("a response head over 64 KiB: %v, want %v", err, errHeadTooLarge)
	}
}

func TestClientSendsSmallBodyTrailersInOneChunk(t *testing.T) {
	got := make(chan string, 1)
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- string(body) + "|" + r.Trailer.Get("Grpc-Status") + "|" + r.Header.Get("Content-Type")
	})
	c := newTestClient(be.hostPort())
	defer c.Close()
	req := get("/")
	req.Method = "POST"
	req.Header = stack.Header{{Name: "content-type", Value: "application/x-test"}}
	req.Body = stack.BytesBody([]byte("payload"), stack.Header{{Name: "grpc-status", Value: "0"}})
	resp, err := c.Serve(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	if g := <-got; g != "payload|0|application/x-test" {
		t.Errorf("backend got %q", g)
	}
}

// countingConn counts the writes made on a connection.
type countingConn struct {
	net.Conn
	writes *atomic.Int32
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

func TestSmallMessagesGoInOneWrite(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, _ = w.Write(body)
	})
	var upWrites, downWrites atomic.Int32
	client := NewClient(func(ctx context.Context) (net.Conn, error) {
		c, err := net.Dial("tcp", be.hostPort())
		return countingConn{c, &upWrites}, err
	}, Config{}, quietLog())
	defer client.Close()
	srv := NewServer(client, Config{}, quietLog())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			srv.ServeConn(countingConn{c, &downWrites}, nil)
		}
	}()
	c := dialRaw(t, ln.Addr().String())
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
	resp := readResponse(t, c, "POST")
	if got := readAll(t, resp); got != "hello" {
		t.Fatalf("echo %q", got)
	}
	if n := upWrites.Load(); n != 1 {
		t.Errorf("request head and small body took %d writes upstream, want 1", n)
	}
	if n := downWrites.Load(); n != 1 {
		t.Errorf("response head and small body took %d writes to the client, want 1", n)
	}
}

func TestClientDropsIdleConnectionsTheUpstreamClosed(t *testing.T) {
	defer func(d time.Duration) { staleCheckAfter = d }(staleCheckAfter)
	staleCheckAfter = 0
	addr, conns, closed := onceServer(t)
	c := newTestClient(addr)
	defer c.Close()
	for i := range 3 {
		post := get("/")
		post.Method = "POST"
		post.Body = stack.BytesBody([]byte("payload"), nil)
		resp, err := c.Serve(context.Background(), post)
		if err != nil {
			t.Fatalf("POST %d after the upstream closed the pooled connection: %v", i, err)
		}
		_, _ = io.ReadAll(resp.Body)
		// The server closes once its answer is written, so maybe after
		// the client read it: wait for the close, do not time it.
		deadline := time.Now().Add(10 * time.Second)
		for closed.Load() < int32(i+1) {
			if time.Now().After(deadline) {
				t.Fatalf("the upstream closed %d connections after %d answers, want %d", closed.Load(), i+1, i+1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections for 3 requests on connections closed after each, want 3", n)
	}
}

// TestClientClosesConnectionsIdlePastPoolIdleTimeout: a pooled connection
// in steady use outlives PoolIdleTimeout (its idle timer, left armed, finds
// it recently handed back and waits out the rest), and one left idle is
// closed once the timeout passes.
func TestClientClosesConnectionsIdlePastPoolIdleTimeout(t *testing.T) {
	var opened, closed atomic.Int32
	closedCh := make(chan struct{}, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				opened.Add(1)
			case http.StateClosed:
				closed.Add(1)
				select {
				case closedCh <- struct{}{}:
				default:
				}
			}
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	const idleTimeout = 200 * time.Millisecond
	c := NewClient(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}, Config{PoolIdleTimeout: idleTimeout}, quietLog())
	defer c.Close()
	send := func() {
		resp, err := c.Serve(context.Background(), get("/"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// In use every idleTimeout/4 for 5 idle timeouts: one connection.
	for deadline := time.Now().Add(5 * idleTimeout); time.Now().Before(deadline); {
		send()
		time.Sleep(idleTimeout / 4)
	}
	if o, cl := opened.Load(), closed.Load(); o != 1 || cl != 0 {
		t.Fatalf("a connection in steady use: %d opened, %d closed; want 1 opened, none closed", o, cl)
	}
	// Left idle: closed once the timeout passes.
	select {
	case <-closedCh:
	case <-time.After(5 * time.Second):
		t.Fatalf("a connection idle for 5 s with a %v idle timeout is still open", idleTimeout)
	}
}
