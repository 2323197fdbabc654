package h2

import (
	"errors"
	"io"
	"sync"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// pageSize is the unit of received-data buffering: a received DATA frame
// is copied into the free tail of the last page, so a stream holds at most
// its window plus one page, whatever the sizes of the peer's frames.
const pageSize = 16 << 10

var pagePool = sync.Pool{New: func() any { p := make([]byte, pageSize); return &p }}

func getPage() *[]byte  { return pagePool.Get().(*[]byte) }
func putPage(p *[]byte) { pagePool.Put(p) }

var errBodyClosed = errors.New("h2: body closed")

// recvBody is the data a stream received: the request body on the Server,
// the response body on the Client. The reader goroutine appends; one
// consumer reads it — either through Read, or, when it is spliced into a
// stream of another connection, that connection's writer pulls from it
// without a goroutine in between.
type recvBody struct {
	st *stream

	mu       sync.Mutex
	pages    []*[]byte
	off      int // read offset in pages[0]
	tail     int // fill level of the last page
	size     int // bytes buffered
	ended    bool
	err      error
	trailers stack.Header
	closed   bool
	sink     *stream // the stream whose writer pulls from this body, if spliced
	ready    chan struct{}
}

func (b *recvBody) init(st *stream) {
	b.st = st
	b.ready = make(chan struct{}, 1)
}

// append copies data in; the reader goroutine calls it after flow control
// accepted the bytes. It reports false when the body was closed or failed
// and the bytes were dropped (their window is the caller's to return).
func (b *recvBody) append(data []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.err != nil {
		return false
	}
	for len(data) > 0 {
		if len(b.pages) == 0 || b.tail == pageSize {
			b.pages = append(b.pages, getPage())
			b.tail = 0
		}
		n := copy((*b.pages[len(b.pages)-1])[b.tail:], data)
		b.tail += n
		b.size += n
		data = data[n:]
	}
	return true
}

// end marks END_STREAM with the trailers, if any.
func (b *recvBody) end(trailers stack.Header) {
	b.mu.Lock()
	b.ended = true
	b.trailers = trailers
	b.mu.Unlock()
}

// fail cuts the body short; later reads return err. A body that had
// ended keeps what it holds, to be read to its end (a response complete
// before its stream was reset). Otherwise the bytes it held go back to
// the connection's window: the stream is gone, but the connection's other
// streams need that window.
func (b *recvBody) fail(err error) {
	b.mu.Lock()
	if b.ended || b.err != nil {
		b.mu.Unlock()
		b.signal()
		return
	}
	b.err = err
	n := b.size
	if b.sink != nil {
		// The sink's writer may be framing a chunk it peeked: leave the
		// pages to the garbage collector rather than to the pool, where
		// another stream could refill them under it.
		clear(b.pages)
		b.pages = b.pages[:0]
		b.size, b.off, b.tail = 0, 0, 0
	} else {
		b.releaseLocked()
	}
	b.mu.Unlock()
	if n > 0 {
		b.st.c.consumed(nil, n)
	}
	b.signal()
}

// signal wakes the consumer: a Read waiting, or the writer splicing.
func (b *recvBody) signal() {
	select {
	case b.ready <- struct{}{}:
	default:
	}
	b.mu.Lock()
	sink := b.sink
	b.mu.Unlock()
	if sink != nil {
		sink.c.kick(sink)
	}
}

func (b *recvBody) releaseLocked() {
	for _, p := range b.pages {
		putPage(p)
	}
	clear(b.pages)
	b.pages = b.pages[:0]
	b.size, b.off, b.tail = 0, 0, 0
}

// Read implements stack.Body.
func (b *recvBody) Read(p []byte) (int, error) {
	for {
		b.mu.Lock()
		if b.size > 0 {
			n := b.takeLocked(p)
			eof := b.size == 0 && b.ended
			b.mu.Unlock()
			b.st.c.consumed(b.st, n)
			if eof {
				return n, io.EOF
			}
			return n, nil
		}
		err := b.err
		if b.closed {
			err = errBodyClosed
		} else if err == nil && b.ended {
			err = io.EOF
		}
		b.mu.Unlock()
		if err != nil {
			return 0, err
		}
		<-b.ready
	}
}

func (b *recvBody) takeLocked(p []byte) int {
	n := 0
	for n < len(p) && b.size > 0 {
		pg := *b.pages[0]
		end := pageSize
		if len(b.pages) == 1 {
			end = b.tail
		}
		c := copy(p[n:], pg[b.off:end])
		n += c
		b.off += c
		b.size -= c
		if b.off == end {
			b.dropFirstLocked()
		}
	}
	return n
}

func (b *recvBody) dropFirstLocked() {
	putPage(b.pages[0])
	copy(b.pages, b.pages[1:])
	b.pages[len(b.pages)-1] = nil
	b.pages = b.pages[:len(b.pages)-1]
	b.off = 0
	if len(b.pages) == 0 {
		b.tail = 0
	}
}

// peek returns the first contiguous buffered bytes, at most max, for the
// writer to frame; they stay valid until skip. ended reports that nothing
// follows what is buffered.
func (b *recvBody) peek(max int) (chunk []byte, last bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return nil, false, b.err
	}
	if b.size == 0 {
		return nil, b.ended, nil
	}
	end := pageSize
	if len(b.pages) == 1 {
		end = b.tail
	}
	chunk = (*b.pages[0])[b.off:end]
	if len(chunk) > max {
		chunk = chunk[:max]
	}
	return chunk, b.ended && len(chunk) == b.size, nil
}

// skip drops n bytes that the writer sent, unless the body failed since
// it peeked them (fail dropped them and returned their window).
func (b *recvBody) skip(n int) {
	b.mu.Lock()
	if n > b.size || b.closed {
		b.mu.Unlock()
		return
	}
	b.off += n
	b.size -= n
	end := pageSize
	if len(b.pages) == 1 {
		end = b.tail
	}
	if b.off == end {
		b.dropFirstLocked()
	}
	b.mu.Unlock()
	b.st.c.consumed(b.st, n)
}

// Trailers implements stack.Body.
func (b *recvBody) Trailers() stack.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.trailers
}

// Close implements stack.Body: before the end it abandons the stream.
func (b *recvBody) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	done := b.ended && b.size == 0 || b.err != nil
	n := b.size
	b.releaseLocked()
	b.mu.Unlock()
	if n > 0 {
		b.st.c.consumed(b.st, n)
	}
	if !done {
		b.st.c.abandonBody(b.st)
	}
	return nil
}

// attach makes sink's writer pull from b: b's news kick sink's writer.
func (b *recvBody) attach(sink *stream) {
	b.mu.Lock()
	b.sink = sink
	b.mu.Unlock()
}
