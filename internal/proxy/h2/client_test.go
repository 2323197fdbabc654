package h2

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// rawServer accepts one connection and hands a Framer on it to the test,
// after reading the client preface and sending empty SETTINGS.
func rawServer(t *testing.T) (addr string, conns chan *http2.Framer) {
	conns = make(chan *http2.Framer, 4)
	addr = listen(t, func(c net.Conn) {
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c, preface); err != nil {
			return
		}
		fr := http2.NewFramer(c, c)
		fr.WriteSettings()
		conns <- fr
	})
	return addr, conns
}

func readUntil(t *testing.T, fr *http2.Framer, match func(http2.Frame) bool) http2.Frame {
	t.Helper()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("server read: %v", err)
		}
		if match(f) {
			return f
		}
	}
}

func headersOn(id uint32) func(http2.Frame) bool {
	return func(f http2.Frame) bool {
		h, ok := f.(*http2.HeadersFrame)
		return ok && (id == 0 || h.StreamID == id)
	}
}

func respond(fr *http2.Framer, id uint32, status string, end bool) {
	var buf bytes.Buffer
	hpack.NewEncoder(&buf).WriteField(hpack.HeaderField{Name: ":status", Value: status})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: buf.Bytes(), EndStream: end, EndHeaders: true})
}

func post() *stack.Request {
	return &stack.Request{Method: "POST", Scheme: "http", Authority: "a", Path: "/", Body: stack.BytesBody([]byte("x"), nil)}
}

func TestClientStreamPastGoAwayIsNotSent(t *testing.T) {
	addr, conns := rawServer(t)
	cl := NewClient(dialer(addr), Config{}, nil)
	defer cl.Close()
	type result struct {
		resp *stack.Response
		err  error
	}
	results := make(chan result, 2)
	go func() { r, err := cl.Serve(context.Background(), post()); results <- result{r, err} }()
	fr := <-conns
	readUntil(t, fr, headersOn(1))
	go func() { r, err := cl.Serve(context.Background(), post()); results <- result{r, err} }()
	readUntil(t, fr, headersOn(3))
	fr.WriteGoAway(1, http2.ErrCodeNo, nil)
	respond(fr, 1, "200", true)
	var ok, notSent int
	for range 2 {
		r := <-results
		switch {
		case r.err == nil && r.resp.Status == 200:
			ok++
		case stack.IsNotSent(r.err):
			notSent++
		default:
			t.Fatalf("unexpected result %+v", r)
		}
	}
	if ok != 1 || notSent != 1 {
		t.Fatalf("%d answered, %d NotSent; want 1 and 1", ok, notSent)
	}
	// A new request does not use the connection that went away.
	go cl.Serve(context.Background(), post())
	select {
	case <-conns:
	case <-time.After(10 * time.Second):
		t.Fatal("no new connection after GOAWAY")
	}
}

func TestClientResponseBodyClosedEarlyResetsUpstream(t *testing.T) {
	addr, conns := rawServer(t)
	cl := NewClient(dialer(addr), Config{}, nil)
	defer cl.Close()
	got := make(chan *stack.Response, 1)
	go func() {
		r, err := cl.Serve(context.Background(), post())
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	fr := <-conns
	readUntil(t, fr, headersOn(1))
	respond(fr, 1, "200", false)
	fr.WriteData(1, false, []byte("partial"))
	r := <-got
	r.Body.Close()
	readUntil(t, fr, func(f http2.Frame) bool {
		rst, ok := f.(*http2.RSTStreamFrame)
		return ok && rst.StreamID == 1 && rst.ErrCode == http2.ErrCodeCancel
	})
}

func TestClientKeepaliveClosesDeadConnection(t *testing.T) {
	addr, conns := rawServer(t)
	cl := NewClient(dialer(addr), Config{KeepaliveInterval: 100 * time.Millisecond, KeepaliveTimeout: 100 * time.Millisecond}, nil)
	defer cl.Close()
	errc := make(chan error, 1)
	go func() { _, err := cl.Serve(context.Background(), post()); errc <- err }()
	fr := <-conns
	readUntil(t, fr, func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && !p.IsAck() })
	// Never answered: the client gives the connection up.
	for {
		if _, err := fr.ReadFrame(); err != nil {
			break
		}
	}
	if err := <-errc; err == nil {
		t.Fatal("request on a dead connection succeeded")
	}
}

func TestClientCloseIdle(t *testing.T) {
	addr, _ := serveH2(t, echo, Config{})
	cl := NewClient(dialer(addr), Config{}, nil)
	defer cl.Close()
	resp, err := cl.Serve(context.Background(), post())
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if !cl.CloseIdle() {
		t.Fatal("CloseIdle left connections")
	}
	// The pool dials again when needed.
	resp, err = cl.Serve(context.Background(), post())
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
}

// TestUpstreamResetIsPassedOnDownstream: an upstream RST_STREAM before
// any response reaches the client as RST_STREAM with the same code.
func TestUpstreamResetIsPassedOnDownstream(t *testing.T) {
	up, conns := rawServer(t)
	cl := NewClient(dialer(up), Config{}, nil)
	defer cl.Close()
	front, _ := serveH2(t, cl, Config{})
	r := dialRaw(t, front)
	r.get(1, true)
	fr := <-conns
	readUntil(t, fr, headersOn(1))
	fr.WriteRSTStream(1, http2.ErrCodeInternal)
	r.await("RST_STREAM INTERNAL_ERROR on stream 1", isRST(1, http2.ErrCodeInternal))
}
