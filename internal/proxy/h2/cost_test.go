package h2

import (
	"context"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// countingConn counts the Write calls made on a connection.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// countedPair is proxyPair with the writes of the Server's connections
// (towards the gRPC client) and of the Client's (towards the upstream)
// counted; layers, if any, wrap the Client as a stack's layers do.
func countedPair(t testing.TB, layers ...stack.Layer) (addr string, serverWrites, clientWrites *atomic.Int64) {
	serverWrites, clientWrites = new(atomic.Int64), new(atomic.Int64)
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, &testService{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	up := ln.Addr().String()
	cl := NewClient(func(ctx context.Context) (net.Conn, error) {
		c, err := dialer(up)(ctx)
		if err != nil {
			return nil, err
		}
		return countingConn{c, clientWrites}, nil
	}, Config{}, nil)
	t.Cleanup(cl.Close)
	srv := NewServer(stack.Build(cl, layers...), Config{}, nil)
	addr = listen(t, func(c net.Conn) { srv.ServeConn(countingConn{c, serverWrites}, &stack.ConnInfo{}) })
	return addr, serverWrites, clientWrites
}

func unary(tb testing.TB, client testpb.TestServiceClient, req *testpb.SimpleRequest) {
	if _, err := client.UnaryCall(context.Background(), req); err != nil {
		tb.Fatal(err)
	}
}

// TestUnaryCallWritesArePerCallBatched: with warm connections, a unary
// gRPC call through the pair costs each side one write: the response's
// HEADERS, DATA and trailers together, the request's HEADERS and DATA with
// END_STREAM together, and the answer to the PING grpc-go sends on every
// message it receives (its bandwidth estimate) riding with the next call's
// frames.
func TestUnaryCallWritesArePerCallBatched(t *testing.T) {
	addr, sw, cw := countedPair(t)
	client := grpcClient(t, addr)
	req := &testpb.SimpleRequest{ResponseSize: 100, Payload: &testpb.Payload{Body: make([]byte, 100)}}
	for range 20 {
		unary(t, client, req)
	}
	sw.Store(0)
	cw.Store(0)
	const calls = 200
	for range calls {
		unary(t, client, req)
	}
	perServer := float64(sw.Load()) / calls
	perClient := float64(cw.Load()) / calls
	t.Logf("writes per unary call: server side %.2f, client side %.2f", perServer, perClient)
	// 1 each when every upstream answer arrives in one read; a loaded
	// machine splits a few.
	if perServer > 1.5 || perClient > 1.5 {
		t.Fatalf("writes per call: server side %.2f, client side %.2f; want 1 each (1.5 with slack)", perServer, perClient)
	}
}

// TestConcurrentCallsShareWrites: on one core, the frames of calls whose
// goroutines are runnable together leave in one write, not one write per
// call: the writer yields before it flushes (see writer). 16 calls at once
// through the pair, 20 times over, must cost each side at most half a
// write per call; one write per call each is what the writer did before
// it yielded.
func TestConcurrentCallsShareWrites(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	addr, sw, cw := countedPair(t)
	client := grpcClient(t, addr)
	req := &testpb.SimpleRequest{ResponseSize: 100, Payload: &testpb.Payload{Body: make([]byte, 100)}}
	const concurrent, rounds = 16, 20
	round := func() {
		var wg sync.WaitGroup
		for range concurrent {
			wg.Go(func() { unary(t, client, req) })
		}
		wg.Wait()
	}
	round()
	sw.Store(0)
	cw.Store(0)
	for range rounds {
		round()
	}
	perServer := float64(sw.Load()) / (concurrent * rounds)
	perClient := float64(cw.Load()) / (concurrent * rounds)
	t.Logf("writes per call, %d calls at once: server side %.2f, client side %.2f", concurrent, perServer, perClient)
	if perServer > 0.5 || perClient > 0.5 {
		t.Fatalf("writes per call with %d calls at once: server side %.2f, client side %.2f; want at most 0.5 each", concurrent, perServer, perClient)
	}
}

// watchedBody watches a body's end as the metrics and balance layers do
// (a stack.Unwrapper): it counts the Reads that returned io.EOF with
// grpc-status 0 in the trailers (requests: with none), Closes, and the
// Reads that asked for bytes (a spliced body has none: only the one with
// no room, at its end).
type watchedBody struct {
	stack.Body
	okEnds, closes, dataReads *atomic.Int64
}

func (b *watchedBody) Unwrap() stack.Body { return b.Body }

func (b *watchedBody) Read(p []byte) (int, error) {
	if len(p) > 0 {
		b.dataReads.Add(1)
	}
	n, err := b.Body.Read(p)
	if err == io.EOF && b.Body.Trailers().Get("grpc-status") == b.wantStatus() {
		b.okEnds.Add(1)
	}
	return n, err
}

func (b *watchedBody) wantStatus() string {
	if b.closes == nil {
		return ""
	}
	return "0"
}

func (b *watchedBody) Close() error {
	if b.closes != nil {
		b.closes.Add(1)
	}
	return b.Body.Close()
}

// TestWatchedBodiesAreSplicedAndSeeTheirEnd: request and response bodies
// wrapped by layers that watch their end are still spliced (one write per
// call each side, the response's trailers with its DATA), and the
// watchers see each body's end with its trailers, and their Close.
func TestWatchedBodiesAreSplicedAndSeeTheirEnd(t *testing.T) {
	var reqEnds, respEnds, respCloses, dataReads atomic.Int64
	watch := func(next stack.Handler) stack.Handler {
		return stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
			req.Body = &watchedBody{Body: req.Body, okEnds: &reqEnds, dataReads: &dataReads}
			resp, err := next.Serve(ctx, req)
			if err == nil {
				resp.Body = &watchedBody{Body: resp.Body, okEnds: &respEnds, closes: &respCloses, dataReads: &dataReads}
			}
			return resp, err
		})
	}
	addr, sw, cw := countedPair(t, watch)
	client := grpcClient(t, addr)
	req := &testpb.SimpleRequest{ResponseSize: 100, Payload: &testpb.Payload{Body: make([]byte, 100)}}
	for range 20 {
		unary(t, client, req)
	}
	sw.Store(0)
	cw.Store(0)
	reqEnds.Store(0)
	respEnds.Store(0)
	respCloses.Store(0)
	const calls = 200
	for range calls {
		unary(t, client, req)
	}
	perServer := float64(sw.Load()) / calls
	perClient := float64(cw.Load()) / calls
	t.Logf("writes per unary call with watched bodies: server side %.2f, client side %.2f", perServer, perClient)
	if perServer > 1.5 || perClient > 1.5 {
		t.Fatalf("writes per call: server side %.2f, client side %.2f; want 1 each (1.5 with slack)", perServer, perClient)
	}
	// The last call's watchers may run just after its response went out.
	deadline := time.Now().Add(5 * time.Second)
	for (reqEnds.Load() < calls || respEnds.Load() < calls || respCloses.Load() < calls) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if reqEnds.Load() != calls || respEnds.Load() != calls || respCloses.Load() != calls {
		t.Fatalf("watchers saw %d request ends, %d response ends with grpc-status 0 and %d closes; want %d each",
			reqEnds.Load(), respEnds.Load(), respCloses.Load(), calls)
	}
	if n := dataReads.Load(); n != 0 {
		t.Fatalf("%d Reads of watched bodies asked for bytes: they were copied, not spliced", n)
	}
}

// BenchmarkUnaryThroughPair: one unary gRPC call, grpc-go client ->
// Server -> Client -> grpc-go server, per op.
func BenchmarkUnaryThroughPair(b *testing.B) {
	addr, _ := proxyAddr(b)
	client := grpcClient(b, addr)
	req := &testpb.SimpleRequest{ResponseSize: 100, Payload: &testpb.Payload{Body: make([]byte, 100)}}
	unary(b, client, req)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		unary(b, client, req)
	}
}

func proxyAddr(tb testing.TB) (string, *Client) {
	addr, _, cl := proxyPair(tb, &testService{})
	return addr, cl
}

// enginePair is the engine alone on both ends: an edge Client -> the
// Server+Client pair under test -> an upstream Server answering a
// gRPC-shaped unary call; call makes one call and reads it to the end.
func enginePair(tb testing.TB) (call func()) {
	upstream, _ := serveH2(tb, stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		io.Copy(io.Discard, req.Body)
		return &stack.Response{Status: 200, Header: stack.Header{{Name: "content-type", Value: "application/grpc"}}, Body: stack.BytesBody(make([]byte, 100), stack.Header{{Name: "grpc-status", Value: "0"}})}, nil
	}), Config{})
	cl := NewClient(dialer(upstream), Config{}, nil)
	tb.Cleanup(cl.Close)
	front, _ := serveH2(tb, cl, Config{})
	edge := NewClient(dialer(front), Config{}, nil)
	tb.Cleanup(edge.Close)
	body := make([]byte, 100)
	buf := make([]byte, 256)
	return func() {
		resp, err := edge.Serve(context.Background(), &stack.Request{Method: "POST", Scheme: "http", Authority: "svc", Path: "/pkg.Svc/Call",
			Header: stack.Header{{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"}}, Body: stack.BytesBody(body, nil)})
		if err != nil {
			tb.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		resp.Body.Close()
	}
}

// TestProxiedUnaryAllocationBudget bounds the allocations of the engine's
// request path: one unary call through enginePair (four engine halves;
// no gRPC library in the count).
func TestProxiedUnaryAllocationBudget(t *testing.T) {
	call := enginePair(t)
	for range 50 {
		call()
	}
	allocs := testing.AllocsPerRun(200, call)
	t.Logf("allocations per proxied unary call (edge Client, the Server+Client pair, upstream Server): %.0f", allocs)
	if allocs > allocBudget {
		t.Fatalf("%.0f allocations per call, budget %d", allocs, allocBudget)
	}
}

// BenchmarkEngineUnary: one call through enginePair per op.
func BenchmarkEngineUnary(b *testing.B) {
	call := enginePair(b)
	call()
	b.ReportAllocs()
	for b.Loop() {
		call()
	}
}

// allocBudget is set from what the engine reaches (see the test's log),
// with a little room.
const allocBudget = 55
