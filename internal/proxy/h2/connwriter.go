package h2

import (
	"io"
	"sync"
)

// connWriter is the writer goroutine's buffered writer. Unlike a
// bufio.Writer it holds its buffer only while bytes wait to be flushed:
// the buffer comes from a pool on the first Write and goes back on Flush,
// so an idle connection (a slowloris one, or one of many held open) holds
// none.
type connWriter struct {
	w    io.Writer
	size int
	buf  *[]byte
	n    int
}

// connBufPool holds the connections' read and write buffers of the
// default size (*[]byte).
var connBufPool sync.Pool

const defaultWriteBufferSize = 32 << 10

func getConnBuf(size int) *[]byte {
	if size == defaultWriteBufferSize {
		if b, ok := connBufPool.Get().(*[]byte); ok {
			return b
		}
	}
	b := make([]byte, size)
	return &b
}

func putConnBuf(b *[]byte, size int) {
	if size == defaultWriteBufferSize {
		connBufPool.Put(b)
	}
}

func newConnWriter(w io.Writer, size int) *connWriter { return &connWriter{w: w, size: size} }

// Write buffers p, flushing first when it does not fit; what is larger
// than the buffer is written through.
func (cw *connWriter) Write(p []byte) (int, error) {
	if cw.n+len(p) > cw.size && cw.n > 0 {
		if err := cw.flushBuf(); err != nil {
			return 0, err
		}
	}
	if len(p) >= cw.size {
		return cw.w.Write(p)
	}
	if cw.buf == nil {
		cw.buf = getConnBuf(cw.size)
	}
	cw.n += copy((*cw.buf)[cw.n:], p)
	return len(p), nil
}

// Buffered is the number of bytes waiting to be flushed.
func (cw *connWriter) Buffered() int { return cw.n }

// Flush writes what is buffered and gives the buffer back.
func (cw *connWriter) Flush() error {
	err := cw.flushBuf()
	if cw.buf != nil {
		putConnBuf(cw.buf, cw.size)
		cw.buf = nil
	}
	return err
}

func (cw *connWriter) flushBuf() error {
	if cw.n == 0 {
		return nil
	}
	_, err := cw.w.Write((*cw.buf)[:cw.n])
	cw.n = 0
	return err
}
