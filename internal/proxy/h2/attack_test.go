package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// rawClient speaks HTTP/2 frame by frame, as an attacker would.
type rawClient struct {
	t   *testing.T
	c   net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialRaw(t *testing.T, addr string, settings ...http2.Setting) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawClient{t: t, c: c, fr: http2.NewFramer(c, c)}
	r.enc = hpack.NewEncoder(&r.buf)
	r.fr.SetMaxReadFrameSize(1 << 20)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return r
}

// block encodes a GET request's header block, with extra fields.
func (r *rawClient) block(extra ...string) []byte {
	r.buf.Reset()
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"}, {Name: ":authority", Value: "a"}, {Name: ":path", Value: "/"}} {
		r.enc.WriteField(f)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		r.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	return append([]byte(nil), r.buf.Bytes()...)
}

func (r *rawClient) get(id uint32, end bool, extra ...string) {
	r.t.Helper()
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block(extra...), EndStream: end, EndHeaders: true}); err != nil {
		r.t.Fatal(err)
	}
}

// await reads frames until match returns true; it fails the test if the
// connection ends first (the deadline only guards against a hang).
func (r *rawClient) await(what string, match func(http2.Frame) bool) http2.Frame {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			r.t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(f) {
			return f
		}
	}
}

// awaitGoAway reads until a GOAWAY and returns its code; ok is false if
// the connection closed without one.
func (r *rawClient) awaitGoAway() (code http2.ErrCode, ok bool) {
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatal("connection neither closed nor sent GOAWAY")
			}
			return 0, false
		}
		if ga, isGA := f.(*http2.GoAwayFrame); isGA {
			return ga.ErrCode, true
		}
	}
}

func isRST(id uint32, code http2.ErrCode) func(http2.Frame) bool {
	return func(f http2.Frame) bool {
		rst, ok := f.(*http2.RSTStreamFrame)
		return ok && rst.StreamID == id && rst.ErrCode == code
	}
}

func isStatus(id uint32, status string) func(http2.Frame) bool {
	return func(f http2.Frame) bool {
		h, ok := f.(*http2.HeadersFrame)
		if !ok || h.StreamID != id {
			return false
		}
		fields, _ := hpack.NewDecoder(4096, nil).DecodeFull(h.HeaderBlockFragment())
		return len(fields) > 0 && fields[0].Value == status
	}
}

// countingHandler counts the requests that reach the application.
type countingHandler struct{ n atomic.Int32 }

func (h *countingHandler) Serve(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	h.n.Add(1)
	io.Copy(io.Discard, req.Body)
	return &stack.Response{Status: 200, Body: stack.BytesBody([]byte("ok"), nil)}, nil
}

func TestRapidResetGetsGoAwayAndResetRequestsNeverReachHandler(t *testing.T) {
	h := &countingHandler{}
	addr, _ := serveH2(t, h, Config{})
	r := dialRaw(t, addr)
	const pairs = 5000
	sent := 0
	go func() {
		// HEADERS then RST_STREAM, batched as an attacker would.
		var batch bytes.Buffer
		fr := http2.NewFramer(&batch, nil)
		for i := range pairs {
			id := uint32(2*i + 1)
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block(), EndHeaders: true})
			fr.WriteRSTStream(id, http2.ErrCodeCancel)
			if i%100 == 99 {
				if _, err := r.c.Write(batch.Bytes()); err != nil {
					return
				}
				sent += 100
				batch.Reset()
			}
		}
	}()
	code, ok := r.awaitGoAway()
	if !ok || code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("got GOAWAY %v (seen %v), want ENHANCE_YOUR_CALM", code, ok)
	}
	if n := h.n.Load(); n > pairs/100 {
		t.Fatalf("%d reset requests reached the handler, want under 1%% of %d", n, pairs)
	}
	t.Logf("handler saw %d of the reset requests", h.n.Load())
}

// Requests read together with their resets never start a handler, however
// many come in one read: news are handed on in groups of maxPendingNews,
// and never between a HEADERS and the RST_STREAM that follows it.
func TestResetRequestsInOneReadNeverReachHandler(t *testing.T) {
	h := &countingHandler{}
	addr, _ := serveH2(t, h, Config{ResetBurst: 10000})
	r := dialRaw(t, addr)
	var batch bytes.Buffer
	fr := http2.NewFramer(&batch, nil)
	const pairs = 10 * maxPendingNews
	for i := range pairs {
		id := uint32(2*i + 1)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block(), EndStream: true, EndHeaders: true})
		fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2*pairs + 1, BlockFragment: r.block(), EndStream: true, EndHeaders: true})
	if _, err := r.c.Write(batch.Bytes()); err != nil {
		t.Fatal(err)
	}
	r.await("the answer to the request after the resets", isStatus(2*pairs+1, "200"))
	// A read that ends between a HEADERS and its RST_STREAM hands the
	// request on (the server cannot know a reset is coming): a few reads.
	if n := h.n.Load() - 1; n > 3 {
		t.Fatalf("%d of %d requests read with their resets reached the handler", n, pairs)
	}
}

// TestProvokedResetsCountLikeResets: a client that makes the server reset
// its streams (here with a zero WINDOW_UPDATE on each) instead of
// resetting them itself meets the same limit.
func TestProvokedResetsCountLikeResets(t *testing.T) {
	h := &countingHandler{}
	addr, _ := serveH2(t, h, Config{})
	r := dialRaw(t, addr)
	go func() {
		var batch bytes.Buffer
		fr := http2.NewFramer(&batch, nil)
		fr.AllowIllegalWrites = true
		for i := range 5000 {
			id := uint32(2*i + 1)
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block(), EndHeaders: true})
			fr.WriteWindowUpdate(id, 0)
			if i%100 == 99 {
				if _, err := r.c.Write(batch.Bytes()); err != nil {
					return
				}
				batch.Reset()
			}
		}
	}()
	if code, ok := r.awaitGoAway(); !ok || code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("got GOAWAY %v (seen %v), want ENHANCE_YOUR_CALM", code, ok)
	}
	if n := h.n.Load(); n > 50 {
		t.Fatalf("%d provoked-reset requests reached the handler", n)
	}
	t.Logf("handler saw %d of them", h.n.Load())
}

func TestTooManyStreamsAreRefused(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	addr, _ := serveH2(t, stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		select {
		case <-hold:
		case <-ctx.Done():
		}
		return &stack.Response{Status: 200, Body: stack.NoBody}, nil
	}), Config{})
	r := dialRaw(t, addr)
	limit := DefaultConfig().MaxConcurrentStreams
	for i := range limit {
		r.get(2*i+1, true)
	}
	r.get(2*limit+1, true)
	r.await("RST_STREAM REFUSED_STREAM on the stream past the limit", isRST(2*limit+1, http2.ErrCodeRefusedStream))
}

func TestContinuationFloodEndsConnection(t *testing.T) {
	addr, _ := serveH2(t, &countingHandler{}, Config{})
	r := dialRaw(t, addr)
	go func() {
		r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(), EndHeaders: false})
		for range 100000 {
			if err := r.fr.WriteContinuation(1, false, nil); err != nil {
				return
			}
		}
	}()
	if code, ok := r.awaitGoAway(); !ok || code != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("got GOAWAY %v (seen %v), want ENHANCE_YOUR_CALM", code, ok)
	}
}

func TestOversizedHeaderBlockEndsConnection(t *testing.T) {
	t.Run("block over 64 KiB", func(t *testing.T) { sendBigBlock(t, "~", http2.ErrCodeEnhanceYourCalm) })
	// 'a' compresses to 5 bits: the block fits, the string does not.
	t.Run("string over the HPACK string limit", func(t *testing.T) { sendBigBlock(t, "a", http2.ErrCodeCompression) })
}

func sendBigBlock(t *testing.T, char string, want http2.ErrCode) {
	addr, _ := serveH2(t, &countingHandler{}, Config{})
	r := dialRaw(t, addr)
	block := r.block("x-big", strings.Repeat(char, 70<<10))
	go func() {
		r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:16000], EndHeaders: false})
		for rest := block[16000:]; len(rest) > 0; {
			n := min(len(rest), 16000)
			if err := r.fr.WriteContinuation(1, n == len(rest), rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
	}()
	if code, ok := r.awaitGoAway(); !ok || code != want {
		t.Fatalf("got GOAWAY %v (seen %v), want %v", code, ok, want)
	}
}

// TestHPACKBombGets431AndConnectionSurvives: a small block that decodes to
// a header list far over the limit (one large field indexed, then named
// again and again by its index) is answered 431; the dynamic table stays
// bounded and the connection stays usable.
func TestHPACKBombGets431AndConnectionSurvives(t *testing.T) {
	h := &countingHandler{}
	addr, _ := serveH2(t, h, Config{})
	r := dialRaw(t, addr)
	r.buf.Reset()
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"}, {Name: ":authority", Value: "a"}, {Name: ":path", Value: "/"}} {
		r.enc.WriteField(f)
	}
	big := hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("b", 3000)}
	r.enc.WriteField(big) // indexed into the dynamic table
	for range 100 {
		r.enc.WriteField(big) // each time one byte: an index
	}
	if r.buf.Len() > 4000 {
		t.Fatalf("bomb block is %d bytes, meant to be small", r.buf.Len())
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.buf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	r.await("431 on stream 1", isStatus(1, "431"))
	r.get(3, true)
	r.await("200 on stream 3", isStatus(3, "200"))
	if n := h.n.Load(); n != 1 {
		t.Fatalf("handler saw %d requests, want only the second", n)
	}
}

func TestOversizedFrameGetsFrameSizeError(t *testing.T) {
	addr, _ := serveH2(t, &countingHandler{}, Config{})
	r := dialRaw(t, addr)
	r.get(1, false)
	r.fr.WriteData(1, true, make([]byte, 20000))
	if code, ok := r.awaitGoAway(); !ok || code != http2.ErrCodeFrameSize {
		t.Fatalf("got GOAWAY %v (seen %v), want FRAME_SIZE_ERROR", code, ok)
	}
}

// An oversized frame in place of the client's first SETTINGS is a frame
// size error too (RFC 9113 §4.2), not "expected SETTINGS".
func TestOversizedFirstFrameGetsFrameSizeError(t *testing.T) {
	addr, _ := serveH2(t, &countingHandler{}, Config{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(append([]byte(http2.ClientPreface), 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0))
	r := &rawClient{t: t, c: c, fr: http2.NewFramer(c, c)}
	if code, ok := r.awaitGoAway(); !ok || code != http2.ErrCodeFrameSize {
		t.Fatalf("got GOAWAY %v (seen %v), want FRAME_SIZE_ERROR", code, ok)
	}
}

// TestControlFrameFloodGetsGoAway: a peer that sends PINGs and SETTINGS
// but reads nothing makes the server queue answers it cannot write; past
// MaxQueuedControlFrames it gets GOAWAY ENHANCE_YOUR_CALM.
func TestControlFrameFloodGetsGoAway(t *testing.T) {
	for _, kind := range []string{"PING", "SETTINGS", "WINDOW_UPDATE"} {
		t.Run(kind, func(t *testing.T) {
			s := NewServer(&countingHandler{}, Config{MaxQueuedControlFrames: 1000}, nil)
			addr := listen(t, func(c net.Conn) {
				c.(*net.TCPConn).SetWriteBuffer(4096)
				s.ServeConn(c, &stack.ConnInfo{})
			})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.(*net.TCPConn).SetReadBuffer(4096)
			var flood bytes.Buffer
			fr := http2.NewFramer(&flood, nil)
			io.WriteString(&flood, http2.ClientPreface)
			fr.WriteSettings()
			for range 200000 {
				switch kind {
				case "PING":
					fr.WritePing(false, [8]byte{1})
				case "SETTINGS":
					fr.WriteSettings()
				case "WINDOW_UPDATE":
					fr.WriteWindowUpdate(0, 1)
				}
			}
			wrote := make(chan error, 1)
			go func() { _, err := c.Write(flood.Bytes()); wrote <- err }()
			<-wrote // the server reads it all, or cuts the connection
			// A peer that does not read may not even get the GOAWAY: the
			// server also closes. Either way it must not answer everything.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			fr = http2.NewFramer(io.Discard, c)
			answers := 0
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatalf("connection neither closed nor sent GOAWAY after %d answers", answers)
					}
					t.Logf("closed without GOAWAY after %d of 200000 answers", answers)
					break
				}
				if ga, ok := f.(*http2.GoAwayFrame); ok {
					if ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
						t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", ga.ErrCode)
					}
					break
				}
				answers++
			}
			if answers >= 200000 {
				t.Fatal("every frame of the flood was answered")
			}
		})
	}
}

func TestSlowClientsAreCut(t *testing.T) {
	cfg := Config{HandshakeTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}
	addr, _ := serveH2(t, &countingHandler{}, cfg)
	t.Run("no preface", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("connection not closed by the server: %v", err)
		}
	})
	t.Run("header block never completed", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: r.block(), EndHeaders: false})
		if _, ok := r.awaitGoAway(); !ok {
			t.Log("closed without GOAWAY")
		}
	})
	t.Run("HEADERS frame never completed", func(t *testing.T) {
		// A server idle for longer than the test: only the header
		// block's own deadline can cut this client.
		addr, _ := serveH2(t, &countingHandler{}, Config{HandshakeTimeout: 200 * time.Millisecond, IdleTimeout: time.Hour})
		r := dialRaw(t, addr)
		block := r.block()
		hdr := []byte{0, byte(len(block) >> 8), byte(len(block)), byte(http2.FrameHeaders),
			byte(http2.FlagHeadersEndHeaders | http2.FlagHeadersEndStream), 0, 0, 0, 1}
		if _, err := r.c.Write(append(hdr, block[:1]...)); err != nil { // the frame's header and one byte of its block
			t.Fatal(err)
		}
		r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, r.c); err != nil {
			t.Fatalf("connection not closed by the server: %v", err)
		}
	})
	t.Run("idle", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.get(1, true)
		r.await("200", isStatus(1, "200"))
		if code, ok := r.awaitGoAway(); !ok || code != http2.ErrCodeNo {
			t.Fatalf("idle connection: GOAWAY %v (seen %v), want NO_ERROR", code, ok)
		}
	})
}

// TestZeroWindowStallResetsStream: a client that opens no window never
// makes the server buffer the response; past StallTimeout the stream is
// reset and the handler's body is closed.
func TestZeroWindowStallResetsStream(t *testing.T) {
	closed := make(chan struct{})
	addr, _ := serveH2(t, stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		return &stack.Response{Status: 200, Body: &endlessBody{closed: closed}}, nil
	}), Config{StallTimeout: 200 * time.Millisecond})
	r := dialRaw(t, addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	r.get(1, true)
	r.await("RST_STREAM on the stalled stream", isRST(1, http2.ErrCodeCancel))
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the response body was never closed")
	}
}

type endlessBody struct {
	closed chan struct{}
	reads  int
}

func (b *endlessBody) Read(p []byte) (int, error) { b.reads++; return len(p), nil }
func (b *endlessBody) Trailers() stack.Header     { return nil }
func (b *endlessBody) Close() error               { close(b.closed); return nil }

// TestShutdownIsTwoStepGoAway: the first GOAWAY names the largest stream
// id and comes with a PING; a stream the client opened before answering it
// is still served; the second GOAWAY names it as the last.
func TestShutdownIsTwoStepGoAway(t *testing.T) {
	h := newBlocking()
	addr, srv := serveH2(t, h, Config{})
	r := dialRaw(t, addr)
	r.get(1, true)
	<-h.started
	go srv.Shutdown(context.Background())
	first := r.await("first GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if first.LastStreamID != 1<<31-1 || first.ErrCode != http2.ErrCodeNo {
		t.Fatalf("first GOAWAY: last stream %d, %v", first.LastStreamID, first.ErrCode)
	}
	ping := r.await("PING", func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && !p.IsAck() }).(*http2.PingFrame)
	r.get(3, true) // in flight when the GOAWAY was sent
	<-h.started
	r.fr.WritePing(true, ping.Data)
	second := r.await("second GOAWAY", func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if second.LastStreamID != 3 {
		t.Fatalf("second GOAWAY names stream %d as the last, want 3", second.LastStreamID)
	}
	close(h.release)
	answered := map[uint32]bool{}
	r.await("200 on streams 1 and 3", func(f http2.Frame) bool {
		for _, id := range []uint32{1, 3} {
			if isStatus(id, "200")(f) {
				answered[id] = true
			}
		}
		return len(answered) == 2
	})
}
