package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

func TestRequestContextEndsWhenClientLeaves(t *testing.T) {
	ended := make(chan error, 1)
	p := startServer(t, Config{}, stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		return nil, awaitEnd(ctx, ended)
	}), nil)
	c := dialRaw(t, p.addr)
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // let the request reach the handler
	_ = c.Close()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("handler's context: %v, want canceled", err)
	}
}

// awaitEnd waits for ctx to end and reports why to ended, or that it had
// not ended after 15 s; it returns ctx's error.
func awaitEnd(ctx context.Context, ended chan<- error) error {
	select {
	case <-ctx.Done():
		ended <- ctx.Err()
	case <-time.After(15 * time.Second):
		ended <- errors.New("still waiting after 15 s")
	}
	return ctx.Err()
}

// A slow request that follows a quick one on the same connection, while
// the quick one's background-read timer would still have been running, is
// watched too: its context ends when the client leaves.
func TestClientLeavingEndsTheRequestAfterAQuickOne(t *testing.T) {
	ended := make(chan error, 1)
	p := startServer(t, Config{}, stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		if r.Path == "/quick" {
			return &stack.Response{Status: 200, Body: stack.NoBody}, nil
		}
		return nil, awaitEnd(ctx, ended)
	}), nil)
	c := dialRaw(t, p.addr)
	_, _ = io.WriteString(c, "GET /quick HTTP/1.1\r\nHost: a\r\n\r\n")
	readAll(t, readResponse(t, c, "GET"))
	// The slow request comes while the quick one's timer is still set.
	time.Sleep(backgroundReadDelay / 2)
	_, _ = io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // let the request reach the handler
	_ = c.Close()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("slow request's context: %v, want canceled", err)
	}
}

func TestPipelinedRequestsWaitForTheResponse(t *testing.T) {
	var active, overlap atomic.Int32
	p := startServer(t, Config{}, stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		if active.Add(1) > 1 {
			overlap.Add(1)
		}
		time.Sleep(20 * time.Millisecond)
		active.Add(-1)
		return &stack.Response{Status: 200, Body: stack.BytesBody([]byte(r.Path), nil)}, nil
	}), nil)
	c := dialRaw(t, p.addr)
	_, _ = io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, want := range []string{"/1", "/2", "/3"} {
		resp := readResponse(t, c, "GET")
		if got := readAll(t, resp); got != want {
			t.Errorf("response %q, want %q", got, want)
		}
	}
	if n := overlap.Load(); n != 0 {
		t.Errorf("%d pipelined requests were handled before the previous response", n)
	}
}

func TestHTTP10ClientGetsCloseDelimitedBody(t *testing.T) {
	p := startServer(t, Config{}, stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		return &stack.Response{Status: 200, Body: &slowBody{parts: []string{"one ", "two"}}}, nil
	}), nil)
	c := dialRaw(t, p.addr)
	_, _ = io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	got := string(closedByServer(t, c))
	if strings.Contains(got, "chunked") || strings.Contains(got, "Content-Length") || !strings.HasSuffix(got, "\r\n\r\none two") {
		t.Errorf("HTTP/1.0 response %q, want a close-delimited body", got)
	}
}

// slowBody yields its parts one per Read, then EOF.
type slowBody struct {
	parts    []string
	trailers stack.Header
}

func (b *slowBody) Read(p []byte) (int, error) {
	if len(b.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.parts[0])
	b.parts = b.parts[1:]
	return n, nil
}
func (b *slowBody) Trailers() stack.Header { return b.trailers }
func (b *slowBody) Close() error           { return nil }

func TestExpectContinueAnsweredOnFirstRead(t *testing.T) {
	gotExpect := make(chan bool, 1)
	p := startServer(t, Config{}, stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		gotExpect <- r.Header.Has("expect")
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		return &stack.Response{Status: 200, Body: stack.BytesBody(body, nil)}, nil
	}), nil)
	c := dialRaw(t, p.addr)
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first answer %q (%v), want 100 Continue", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("100 Continue followed by %q", blank)
	}
	_, _ = io.WriteString(c, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); resp.StatusCode != 200 || got != "hello" {
		t.Errorf("final answer %d %q", resp.StatusCode, got)
	}
	if <-gotExpect {
		t.Error("the handler saw Expect: the engine must remove it")
	}
}

func TestResponseTrailersFromHandler(t *testing.T) {
	p := startServer(t, Config{}, stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		return &stack.Response{Status: 200, Body: stack.BytesBody([]byte("data"), stack.Header{{Name: "grpc-status", Value: "0"}})}, nil
	}), nil)
	c := dialRaw(t, p.addr)
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp := readResponse(t, c, "GET")
	if got := readAll(t, resp); got != "data" || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Errorf("body %q trailers %v, want data with Grpc-Status: 0", got, resp.Trailer)
	}
}

func TestShutdownWaitsForBusyAndClosesIdle(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	srv := NewServer(stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		if r.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		return &stack.Response{Status: 200, Body: stack.BytesBody([]byte("done"), nil)}, nil
	}), Config{}, quietLog())
	idle, busy := loopbackPair(t, srv), loopbackPair(t, srv)
	_, _ = io.WriteString(idle, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	readResponse(t, idle, "GET")
	_, _ = io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	closedByServer(t, idle)
	close(release)
	resp := readResponse(t, busy, "GET")
	if got := readAll(t, resp); got != "done" || !resp.Close {
		t.Errorf("busy request got %q (close %v), want its answer with Connection: close", got, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestShutdownCutsAfterGrace(t *testing.T) {
	ctxErr := make(chan error, 1)
	srv := NewServer(stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		<-ctx.Done()
		ctxErr <- ctx.Err()
		return nil, ctx.Err()
	}), Config{}, quietLog())
	c := loopbackPair(t, srv)
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want deadline exceeded", err)
	}
	if err := <-ctxErr; !errors.Is(err, context.Canceled) {
		t.Errorf("request context: %v, want canceled", err)
	}
	closedByServer(t, c)
}

func TestHandlerErrorsAndImpossibleStatusesAre502(t *testing.T) {
	p := startServer(t, Config{}, stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		switch r.Path {
		case "/error":
			return nil, errors.New("internal detail")
		case "/101":
			return &stack.Response{Status: 101, Body: stack.NoBody}, nil
		}
		return &stack.Response{Status: 103, Body: stack.NoBody}, nil
	}), nil)
	c := dialRaw(t, p.addr)
	for _, path := range []string{"/error", "/101", "/103"} {
		_, _ = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")
		resp := readResponse(t, c, "GET")
		if body := readAll(t, resp); resp.StatusCode != 502 || body != "" {
			t.Errorf("%s: %d %q, want a bare 502", path, resp.StatusCode, body)
		}
	}
}

// TestAnswerBeforeTheBodyIsNotLostToAReset: a Handler that answers
// without reading a large upload ends the connection; a client still
// uploading, that reads while it writes (as curl does), must get the whole
// answer and then the end of the stream, not the reset of a connection
// closed with bytes unread (RFC 9112 section 9.6). Go's own client is no
// witness here: when the server closes, its write error can win over the
// answer it has read (golang/go#51109), whatever the server does.
func TestAnswerBeforeTheBodyIsNotLostToAReset(t *testing.T) {
	p := startServer(t, Config{}, stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		return &stack.Response{Status: 413, Body: stack.BytesBody([]byte("too large\n"), nil)}, nil
	}), nil)
	upload := make([]byte, 16<<20)
	for range 10 {
		c := dialRaw(t, p.addr)
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			_, _ = io.WriteString(c, fmt.Sprintf("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", len(upload)))
			_, _ = c.Write(upload) // fails once the client closes below
		}()
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
		if err != nil {
			t.Fatalf("reading the answer: %v; want the 413", err)
		}
		body, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 413 || string(body) != "too large\n" || err != nil {
			t.Fatalf("answer %d %q (%v), want 413 \"too large\"", resp.StatusCode, body, err)
		}
		if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("after the answer: %d bytes, %v; want the end of the stream (the server half-closes and drains)", n, err)
		}
		_ = c.Close()
		<-wrote
	}
}

// TestAnswerBeforeTheBodyEndsClosesAndSaysSo: a Handler that answers
// before reading the request's body to its end (a refused 100-continue,
// an early error) gets its answer sent with Connection: close, and the
// connection ends; a client that kept it would send its next request into
// the close (seen through the mesh: a POST answered 502). A Handler that
// read the body keeps the connection.
func TestAnswerBeforeTheBodyEndsClosesAndSaysSo(t *testing.T) {
	p := startServer(t, Config{}, stack.HandlerFunc(func(ctx context.Context, r *stack.Request) (*stack.Response, error) {
		if r.Path == "/read" {
			if _, err := io.ReadAll(r.Body); err != nil {
				return nil, err
			}
		}
		return &stack.Response{Status: 417, Body: stack.BytesBody([]byte("no"), nil)}, nil
	}), nil)
	for _, c := range []struct{ name, request string }{
		{"refused 100-continue", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"},
		{"part of a body sent", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nhello"},
		{"chunked, unfinished", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := dialRaw(t, p.addr)
			_, _ = io.WriteString(conn, c.request)
			resp := readResponse(t, conn, "POST")
			if got := readAll(t, resp); resp.StatusCode != 417 || got != "no" {
				t.Fatalf("answer %d %q, want the handler's 417", resp.StatusCode, got)
			}
			if !resp.Close {
				t.Errorf("the answer kept the connection (no Connection: close): %v", resp.Header)
			}
			if rest := closedByServer(t, conn); len(rest) > 0 {
				t.Errorf("after the answer the server sent %q", rest)
			}
		})
	}
	t.Run("body read", func(t *testing.T) {
		conn := dialRaw(t, p.addr)
		for range 2 {
			_, _ = io.WriteString(conn, "POST /read HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
			resp := readResponse(t, conn, "POST")
			if readAll(t, resp); resp.Close {
				t.Fatal("the answer to a request whose body was read closed the connection")
			}
		}
	})
}
