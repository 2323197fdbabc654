package tcp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// direction is one half of a forwarded connection.
type direction struct {
	name     string
	src, dst net.Conn
	onRead   func(int) // counts bytes read from src, if set
	onWrite  func(int) // counts bytes written to dst, if set
}

var bufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// pump copies one direction until src's EOF, then half-closes dst. Any other
// error aborts the whole forwarding.
func (f *forwarding) pump(d direction) (read, written int64) {
	var err error
	if d.onRead == nil && d.onWrite == nil && f.idleTimeout == 0 {
		read, err = io.Copy(d.dst, d.src)
		written = read
		if err != nil {
			err = describe(d, "copying", err)
		}
	} else {
		read, written, err = f.copyCounted(d)
	}
	if err != nil {
		f.abort(err)
		return read, written
	}
	if hc, ok := d.dst.(interface{ CloseWrite() error }); ok {
		// A failure here means dst is gone; the other direction notices.
		_ = hc.CloseWrite()
	}
	return read, written
}

// copyCounted is io.Copy with a pooled buffer, counters called on every
// read and write, and every move of bytes noted for the idle watchdog.
func (f *forwarding) copyCounted(d direction) (read, written int64, err error) {
	bufp := bufferPool.Get().(*[]byte)
	defer bufferPool.Put(bufp)
	buf := *bufp
	for {
		n, rerr := d.src.Read(buf)
		if n > 0 {
			f.touch()
			read += int64(n)
			if d.onRead != nil {
				d.onRead(n)
			}
			m, werr := d.dst.Write(buf[:n])
			written += int64(m)
			if d.onWrite != nil && m > 0 {
				d.onWrite(m)
			}
			if werr != nil {
				return read, written, describe(d, "writing", werr)
			}
			f.touch()
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF):
			return read, written, nil
		default:
			return read, written, describe(d, "reading", rerr)
		}
	}
}

func describe(d direction, op string, err error) error {
	return fmt.Errorf("%s %s: %w", op, d.name, err)
}
