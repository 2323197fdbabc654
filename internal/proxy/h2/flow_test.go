package h2

import (
	"context"
	"io"
	"testing"

	"golang.org/x/net/http2"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// TestWindowUpdatesAreBatched: a 4 MiB upload is acknowledged with window
// updates of at least a quarter window each, not one per DATA frame.
func TestWindowUpdatesAreBatched(t *testing.T) {
	got := make(chan int64, 1)
	addr, _ := serveH2(t, stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		n, _ := io.Copy(io.Discard, req.Body)
		got <- n
		return &stack.Response{Status: 200, Body: stack.NoBody}, nil
	}), Config{})
	r := dialRaw(t, addr)
	r.get(1, false)
	const total = 4 << 20
	// The server's windows are 1 MiB per stream, 4 MiB per connection;
	// send as they open.
	streamWin, connWin := int64(65535), int64(65535)
	updates, sent := 0, 0
	chunk := make([]byte, 16384)
	for sent < total {
		for sent < total && streamWin > 0 && connWin > 0 {
			n := min(len(chunk), total-sent, int(streamWin), int(connWin))
			if err := r.fr.WriteData(1, sent+n == total, chunk[:n]); err != nil {
				t.Fatal(err)
			}
			sent += n
			streamWin -= int64(n)
			connWin -= int64(n)
		}
		if sent == total {
			break
		}
		f := r.await("WINDOW_UPDATE", func(f http2.Frame) bool {
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
					streamWin += int64(v) - 65535
				}
				if !f.IsAck() {
					r.fr.WriteSettingsAck()
				}
			case *http2.WindowUpdateFrame:
				return true
			}
			return false
		}).(*http2.WindowUpdateFrame)
		updates++
		if f.StreamID == 0 {
			connWin += int64(f.Increment)
		} else {
			streamWin += int64(f.Increment)
		}
		if f.StreamID != 0 && f.Increment < 1<<20/4 && updates > 1 {
			t.Fatalf("stream window update of %d bytes, want batches of at least 256 KiB", f.Increment)
		}
	}
	if n := <-got; n != total {
		t.Fatalf("handler read %d bytes", n)
	}
	if updates > 40 {
		t.Fatalf("%d window updates for 4 MiB", updates)
	}
	t.Logf("%d window updates for 4 MiB", updates)
}

// TestEndStreamRidesOnLastData: a known body goes out as HEADERS and one
// DATA frame carrying END_STREAM, not an extra empty frame.
func TestEndStreamRidesOnLastData(t *testing.T) {
	addr, _ := serveH2(t, stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		return &stack.Response{Status: 200, Body: stack.BytesBody(make([]byte, 100), nil)}, nil
	}), Config{})
	r := dialRaw(t, addr)
	r.get(1, true)
	h := r.await("HEADERS", func(f http2.Frame) bool { _, ok := f.(*http2.HeadersFrame); return ok }).(*http2.HeadersFrame)
	if h.StreamEnded() {
		t.Fatal("END_STREAM on HEADERS of a response with a body")
	}
	d := r.await("DATA", func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok }).(*http2.DataFrame)
	if len(d.Data()) != 100 || !d.StreamEnded() {
		t.Fatalf("DATA of %d bytes, END_STREAM %v; want 100 and END_STREAM", len(d.Data()), d.StreamEnded())
	}
}

// TestResetStreamReturnsItsBufferedBytesToTheConnection: request body
// bytes the handler never read, on a stream the client then resets, go
// back to the connection's window; kept, they would shrink it for every
// other stream until the connection carried nothing.
func TestResetStreamReturnsItsBufferedBytesToTheConnection(t *testing.T) {
	h := newBlocking()
	addr, _ := serveH2(t, h, Config{ConnWindow: 65535, StreamWindow: 65535})
	r := dialRaw(t, addr)
	r.get(1, false)
	<-h.started
	for range 2 {
		if err := r.fr.WriteData(1, false, make([]byte, 15000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.fr.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	f := r.await("a connection WINDOW_UPDATE", func(f http2.Frame) bool {
		wu, ok := f.(*http2.WindowUpdateFrame)
		return ok && wu.StreamID == 0
	})
	if incr := f.(*http2.WindowUpdateFrame).Increment; incr != 30000 {
		t.Errorf("the connection window grew by %d, want the 30000 bytes of the reset stream", incr)
	}
}
