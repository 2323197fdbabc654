package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

func h2cOnly() *http.Protocols {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return p
}

// h2cTransport is net/http's HTTP/2 client over plain TCP (prior
// knowledge): a witness.
func h2cTransport() *http.Transport { return &http.Transport{Protocols: h2cOnly()} }

// h2cServer serves h with net/http's HTTP/2 server over plain TCP.
func h2cServer(t testing.TB, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, Protocols: h2cOnly()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func serveH2(t testing.TB, h stack.Handler, cfg Config) (string, *Server) {
	s := NewServer(h, cfg, nil)
	addr := listen(t, func(c net.Conn) { s.ServeConn(c, &stack.ConnInfo{}) })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return addr, s
}

// echo answers with the request body and trailers, and names what it got
// in its headers.
var echo = stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	h := stack.Header{{Name: "x-method", Value: req.Method}, {Name: "x-path", Value: req.Path}, {Name: "x-authority", Value: req.Authority}, {Name: "x-protocol", Value: req.Protocol}}
	return &stack.Response{Status: 200, Header: h, Body: stack.BytesBody(body, req.Body.Trailers())}, nil
})

func TestNetHTTPClientToServerWithTrailers(t *testing.T) {
	addr, _ := serveH2(t, echo, Config{})
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", "http://"+addr+"/p?q=1", strings.NewReader("hello"))
	req.Trailer = http.Header{"X-Sum": {"42"}}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello" || resp.Header.Get("x-path") != "/p?q=1" || resp.Header.Get("x-method") != "POST" {
		t.Fatalf("got %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if got := resp.Trailer.Get("x-sum"); got != "42" {
		t.Fatalf("trailer x-sum = %q, want 42 (echoed)", got)
	}
}

func TestClientToNetHTTPServer(t *testing.T) {
	addr := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Got")
		w.Header().Set("x-te", r.Header.Get("te"))
		w.WriteHeader(201)
		w.Write(bytes.ToUpper(b))
		w.Header().Set("X-Got", r.Trailer.Get("X-In"))
	}))
	cl := NewClient(dialer(addr), Config{}, nil)
	defer cl.Close()
	gotConn := 0
	req := &stack.Request{Method: "POST", Scheme: "http", Authority: "x", Path: "/",
		Header: stack.Header{{Name: "te", Value: "trailers"}, {Name: "trailer", Value: "x-in"}}, Body: stack.BytesBody([]byte("abc"), stack.Header{{Name: "x-in", Value: "t"}}),
		GotConn: func() { gotConn++ }}
	resp, err := cl.Serve(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.Status != 201 || string(body) != "ABC" {
		t.Fatalf("got %d %q %v", resp.Status, body, err)
	}
	if got := resp.Body.Trailers().Get("x-got"); got != "t" {
		t.Fatalf("trailer x-got = %q, want t (the request trailer as the server saw it)", got)
	}
	if gotConn != 1 {
		t.Fatalf("GotConn called %d times", gotConn)
	}
}

func TestClientDialErrorIsNotSent(t *testing.T) {
	cl := NewClient(func(context.Context) (net.Conn, error) { return nil, errors.New("refused") }, Config{}, nil)
	_, err := cl.Serve(context.Background(), &stack.Request{Method: "GET", Body: stack.NoBody})
	if !stack.IsNotSent(err) {
		t.Fatalf("got %v, want a NotSent error", err)
	}
}

// blockingHandler answers after release is closed, and counts requests.
type blockingHandler struct {
	release chan struct{}
	started chan struct{}
	n       atomic.Int32
	ctxErr  chan error
}

func (h *blockingHandler) Serve(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	h.n.Add(1)
	h.started <- struct{}{}
	select {
	case <-h.release:
	case <-ctx.Done():
		h.ctxErr <- ctx.Err()
		return nil, ctx.Err()
	}
	return &stack.Response{Status: 200, Body: stack.BytesBody([]byte("done"), nil)}, nil
}

func newBlocking() *blockingHandler {
	return &blockingHandler{release: make(chan struct{}), started: make(chan struct{}, 100), ctxErr: make(chan error, 100)}
}

func TestClientOpensAnotherConnectionWhenPeerStreamLimitIsReached(t *testing.T) {
	h := newBlocking()
	addr, _ := serveH2(t, h, Config{MaxConcurrentStreams: 2})
	var dials atomic.Int32
	cl := NewClient(func(ctx context.Context) (net.Conn, error) { dials.Add(1); return dialer(addr)(ctx) }, Config{}, nil)
	defer cl.Close()
	// Learn the peer's limit first.
	first := get(t, cl, h)
	<-first
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := cl.Serve(context.Background(), &stack.Request{Method: "GET", Path: "/", Authority: "a", Body: stack.NoBody})
			if err == nil {
				_, err = io.ReadAll(resp.Body)
			}
			errs <- err
		}()
	}
	for range 5 {
		<-h.started
	}
	close(h.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := dials.Load(); got != 3 {
		t.Fatalf("%d connections for 5 concurrent streams with a limit of 2, want 3", got)
	}
}

// get does one request so that the client has a connection and the peer's
// SETTINGS; the returned channel is closed when it is done.
func get(t *testing.T, cl *Client, h *blockingHandler) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := cl.Serve(context.Background(), &stack.Request{Method: "GET", Path: "/", Authority: "a", Body: stack.NoBody})
		if err == nil {
			io.ReadAll(resp.Body)
		}
	}()
	<-h.started
	h.release <- struct{}{}
	return done
}

func TestShutdownDrainsInFlightAndRefusesNew(t *testing.T) {
	h := newBlocking()
	addr, srv := serveH2(t, h, Config{})
	cl := NewClient(dialer(addr), Config{}, nil)
	defer cl.Close()
	result := make(chan string, 1)
	go func() {
		resp, err := cl.Serve(context.Background(), &stack.Request{Method: "GET", Path: "/", Authority: "a", Body: stack.NoBody})
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		result <- string(b)
	}()
	<-h.started
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	// The client learns of the GOAWAY; the stream in flight still ends well.
	for {
		cl.mu.Lock()
		gone := len(cl.conns) == 1 && cl.conns[0].isGoneAway()
		cl.mu.Unlock()
		if gone {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(h.release)
	if got := <-result; got != "done" {
		t.Fatalf("in-flight request got %q", got)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := h.n.Load(); n != 1 {
		t.Fatalf("handler ran %d times", n)
	}
}

func (cc *clientConn) isGoneAway() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.goneAway
}

func TestShutdownCutsAtDeadlineAndCancelsHandlers(t *testing.T) {
	h := newBlocking()
	addr, srv := serveH2(t, h, Config{})
	cl := NewClient(dialer(addr), Config{}, nil)
	defer cl.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := cl.Serve(context.Background(), &stack.Request{Method: "GET", Path: "/", Authority: "a", Body: stack.NoBody})
		errc <- err
	}()
	<-h.started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if err := <-h.ctxErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler ctx: %v", err)
	}
	if err := <-errc; err == nil {
		t.Fatal("request cut by shutdown succeeded")
	}
}

func TestClientCancelResetsUpstreamAndHandlerSeesIt(t *testing.T) {
	h := newBlocking()
	addr, _ := serveH2(t, h, Config{})
	cl := NewClient(dialer(addr), Config{}, nil)
	defer cl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := cl.Serve(ctx, &stack.Request{Method: "GET", Path: "/", Authority: "a", Body: stack.NoBody})
		errc <- err
	}()
	<-h.started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve = %v", err)
	}
	if err := <-h.ctxErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler ctx = %v, want Canceled after the RST_STREAM", err)
	}
}

func TestConnectTunnels(t *testing.T) {
	for _, protocol := range []string{"", "websocket"} {
		t.Run("protocol="+protocol, func(t *testing.T) {
			addr, _ := serveH2(t, stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
				if req.Method != "CONNECT" || req.Protocol != protocol {
					return &stack.Response{Status: 400, Body: stack.NoBody}, nil
				}
				// A tunnel that echoes upper-cased bytes as they come.
				pr, pw := io.Pipe()
				go func() {
					buf := make([]byte, 100)
					for {
						n, err := req.Body.Read(buf)
						if n > 0 {
							pw.Write(bytes.ToUpper(buf[:n]))
						}
						if err != nil {
							pw.CloseWithError(err)
							return
						}
					}
				}()
				return &stack.Response{Status: 200, Body: pipeBody{pr}}, nil
			}), Config{})
			cl := NewClient(dialer(addr), Config{}, nil)
			defer cl.Close()
			pr, pw := io.Pipe()
			req := &stack.Request{Method: "CONNECT", Authority: "db:5432", Protocol: protocol, Body: pipeBody{pr}}
			if protocol != "" {
				req.Scheme, req.Path = "http", "/chat"
			}
			resp, err := cl.Serve(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != 200 {
				t.Fatalf("status %d", resp.Status)
			}
			buf := make([]byte, 10)
			for _, msg := range []string{"ping", "again"} {
				pw.Write([]byte(msg))
				n, err := io.ReadFull(resp.Body, buf[:len(msg)])
				if err != nil || string(buf[:n]) != strings.ToUpper(msg) {
					t.Fatalf("tunnel echoed %q, %v", buf[:n], err)
				}
			}
			pw.Close()
			if _, err := resp.Body.Read(buf); err != io.EOF {
				t.Fatalf("after close: %v", err)
			}
		})
	}
}

type pipeBody struct{ r *io.PipeReader }

func (p pipeBody) Read(b []byte) (int, error) { return p.r.Read(b) }
func (p pipeBody) Trailers() stack.Header     { return nil }
func (p pipeBody) Close() error               { return p.r.Close() }

// TestNoGoroutineOutlivesItsConnection: after calls of every shape
// (complete, streamed, cancelled, tunnels) and closing both sides, the
// goroutine count is back where it was.
func TestNoGoroutineOutlivesItsConnection(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		svc := &testService{cancelled: make(chan error, 10)}
		gs := grpc.NewServer()
		testpb.RegisterTestServiceServer(gs, svc)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go gs.Serve(ln)
		defer gs.Stop()
		cl := NewClient(dialer(ln.Addr().String()), Config{}, nil)
		defer cl.Close()
		srv := NewServer(cl, Config{}, nil)
		pln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan struct{})
		go func() {
			defer close(served)
			var wg sync.WaitGroup
			for {
				c, err := pln.Accept()
				if err != nil {
					wg.Wait()
					return
				}
				wg.Add(1)
				go func() { defer wg.Done(); srv.ServeConn(c, &stack.ConnInfo{}) }()
			}
		}()
		cc, err := grpc.NewClient(pln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		client := testpb.NewTestServiceClient(cc)
		ctx := context.Background()
		for range 10 {
			if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 10}); err != nil {
				t.Fatal(err)
			}
		}
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}})
		stream.Recv()
		cctx, cancel := context.WithCancel(ctx)
		s2, err := client.FullDuplexCall(cctx)
		if err != nil {
			t.Fatal(err)
		}
		s2.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("x")}})
		s2.Recv()
		cancel()
		stream.CloseSend()
		stream.Recv()
		cc.Close()
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		pln.Close()
		<-served
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines left over (%d before):\n%s", n-before, before, buf[:runtime.Stack(buf, true)])
	}
}
