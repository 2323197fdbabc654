package retry

import (
	"errors"
	"io"
	"sync"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// MaxBufferedBody is how much of a request body is kept for replay, and
// how much of a response is held while waiting for its trailers: 64 KiB,
// as Linkerd has it.
const MaxBufferedBody = 64 << 10

// errAbandoned is what an abandoned attempt reads from the request body:
// the retry layer gave up on that attempt and sends the body again.
var errAbandoned = errors.New("request body abandoned: the attempt is being retried")

// replayBuffer keeps what the attempts read of a request body, up to
// MaxBufferedBody, so that a retry sends the same bytes again. It reads
// the client's body only as fast as the current attempt asks for it;
// every byte read from the client is kept until the buffer overflows,
// after which no retry is possible and the current attempt reads the rest
// straight through. An abandoned attempt's engine may still be reading
// when the next attempt starts: its reads fail with errAbandoned, and
// whatever it had read from the client is in the buffer for the next.
type replayBuffer struct {
	src stack.Body

	mu         sync.Mutex
	cond       sync.Cond // signalled when reading ends
	buf        []byte
	reading    bool // a reader is in src.Read, outside mu
	ended      bool // src returned io.EOF
	err        error
	trailers   stack.Header
	overflowed bool          // more than MaxBufferedBody read: no retry
	current    *replayReader // the attempt's reader
	final      bool          // no more attempts: the current reader owns src
	srcClosed  bool
}

func newReplayBuffer(src stack.Body) *replayBuffer {
	b := &replayBuffer{src: src}
	b.cond.L = &b.mu
	return b
}

// next abandons the current reader and returns a new one that reads the
// body from its start, or nil when the body cannot be replayed (it
// overflowed the buffer, or reading it failed).
func (b *replayBuffer) next() *replayReader {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.overflowed || b.err != nil {
		return nil
	}
	if b.current != nil {
		b.current.abandoned = true
	}
	b.current = &replayReader{b: b}
	return b.current
}

// replayable reports whether a retry could still send the whole body;
// nil (no body) always can.
func (b *replayBuffer) replayable() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.overflowed && b.err == nil
}

// complete reports whether the client's body has ended and is all in the
// buffer; nil (no body) is.
func (b *replayBuffer) complete() bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ended && !b.overflowed
}

// settle says no attempt follows: the client's body is closed when the
// current reader is closed (now, if it already was), or when nothing reads
// it anymore.
func (b *replayBuffer) settle() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.final = true
	if b.current == nil || b.current.closed {
		b.closeSrcLocked()
	}
}

func (b *replayBuffer) closeSrcLocked() {
	if !b.srcClosed {
		b.srcClosed = true
		b.src.Close()
	}
}

// replayReader is one attempt's request body.
type replayReader struct {
	b         *replayBuffer
	off       int
	abandoned bool // guarded by b.mu
	closed    bool // guarded by b.mu
}

func (r *replayReader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	for {
		switch {
		case r.abandoned || r.closed:
			b.mu.Unlock()
			return 0, errAbandoned
		case r.off < len(b.buf):
			n := copy(p, b.buf[r.off:])
			r.off += n
			b.mu.Unlock()
			return n, nil
		case b.ended:
			b.mu.Unlock()
			return 0, io.EOF
		case b.err != nil:
			err := b.err
			b.mu.Unlock()
			return 0, err
		case b.reading:
			b.cond.Wait()
			continue
		}
		if len(p) == 0 {
			b.mu.Unlock()
			return 0, nil
		}
		// Read from the client, outside the lock: it may take long.
		b.reading = true
		b.mu.Unlock()
		n, err := b.src.Read(p)
		b.mu.Lock()
		b.reading = false
		b.cond.Broadcast()
		if n > 0 {
			if b.overflowed {
				// Past the buffer: only the last attempt reads, straight through.
				r.off += n
				b.mu.Unlock()
				return n, err
			}
			// Keep it, even past the limit by this one read: the reader
			// may have been abandoned meanwhile and the next one needs it.
			b.buf = append(b.buf, p[:n]...)
			if len(b.buf) > MaxBufferedBody {
				b.overflowed = true
			}
		}
		switch {
		case err == io.EOF:
			b.ended = true
			b.trailers = b.src.Trailers()
		case err != nil:
			b.err = err
		}
		// Loop: hand out the bytes from the buffer (or this reader's end).
	}
}

// Trailers are the client body's trailers, once it has ended.
func (r *replayReader) Trailers() stack.Header {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	return r.b.trailers
}

// Close ends this attempt's reading. The client's body stays open for the
// next attempt until the buffer is settled.
func (r *replayReader) Close() error {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	r.closed = true
	if b.final && b.current == r {
		b.closeSrcLocked()
	}
	return nil
}
