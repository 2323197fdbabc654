package retry

import (
	"io"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// held is what holding a response body until its trailers gave.
type held struct {
	// body is what the client gets: the whole body and its trailers
	// (complete), or what was read followed by the rest of the stream.
	body stack.Body
	// trailers are the response's trailers when complete.
	trailers stack.Header
	complete bool
	// err is set when the body failed before its end: nothing of it
	// reached the client, the attempt failed.
	err error
}

// holdBody reads a response body until it ends, up to MaxBufferedBody, so
// that its trailers can decide a retry before any of it reaches the
// client. A longer body is released: the returned body gives what was
// read, then the rest of src as it comes, and may no longer be retried.
// So is the body of a conversation: one that brings data while the
// request is still being sent (requestOpen), as a bidirectional stream
// whose client waits for an answer before it sends more would never end.
func holdBody(src stack.Body, requestOpen func() bool) held {
	var buf []byte
	chunk := make([]byte, 16<<10)
	for {
		n, err := src.Read(chunk)
		buf = append(buf, chunk[:n]...)
		switch {
		case err == io.EOF:
			t := src.Trailers()
			src.Close()
			return held{body: stack.BytesBody(buf, t), trailers: t, complete: true}
		case err != nil:
			return held{err: err}
		case len(buf) > MaxBufferedBody, n > 0 && requestOpen():
			return held{body: &releasedBody{head: buf, Body: src}}
		}
	}
}

// releasedBody is a response body of which head was already read.
type releasedBody struct {
	head []byte
	stack.Body
}

func (b *releasedBody) Read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		if len(b.head) == 0 {
			b.head = nil
		}
		return n, nil
	}
	return b.Body.Read(p)
}
