package retry

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// chunkedBody gives its bytes in reads of at most step bytes.
type chunkedBody struct {
	b      []byte
	step   int
	closed bool
}

func (c *chunkedBody) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.step)], c.b)
	c.b = c.b[n:]
	return n, nil
}
func (c *chunkedBody) Trailers() stack.Header {
	return stack.Header{{Name: "x-checksum", Value: "1"}}
}
func (c *chunkedBody) Close() error { c.closed = true; return nil }

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestReplayGivesEveryAttemptTheSameBytes(t *testing.T) {
	want := pattern(50 << 10)
	src := &chunkedBody{b: bytes.Clone(want), step: 3000}
	buf := newReplayBuffer(src)
	first := buf.next()
	part := make([]byte, 10000)
	if _, err := io.ReadFull(first, part); err != nil {
		t.Fatal(err)
	}
	second := buf.next()
	if _, err := first.Read(part); !errors.Is(err, errAbandoned) {
		t.Fatalf("the abandoned attempt read on: %v", err)
	}
	got, err := io.ReadAll(second)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("retry read %d bytes (%v), want the %d the client sent", len(got), err, len(want))
	}
	if second.Trailers().Get("x-checksum") != "1" {
		t.Fatal("the retry lost the body's trailers")
	}
	if src.closed {
		t.Fatal("the client's body was closed before the last attempt was settled")
	}
	buf.settle()
	second.Close()
	if !src.closed {
		t.Fatal("the client's body was not closed once the last attempt was done")
	}
}

func TestReplayPastTheBufferStreamsOnAndRefusesRetries(t *testing.T) {
	want := pattern(100 << 10)
	buf := newReplayBuffer(&chunkedBody{b: bytes.Clone(want), step: 16 << 10})
	first := buf.next()
	got, err := io.ReadAll(first)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), want all %d", len(got), err, len(want))
	}
	if buf.replayable() || buf.next() != nil {
		t.Fatal("a body past the buffer can still be replayed")
	}
	if len(buf.buf) > MaxBufferedBody+16<<10 {
		t.Fatalf("kept %d bytes, more than the buffer and one read", len(buf.buf))
	}
}
