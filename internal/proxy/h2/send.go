package h2

import (
	"io"

	"golang.org/x/net/http2"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

func putBuf(b *[]byte) { putPage(b) }

// sendData gives each active stream at most one DATA frame (headers and
// trailers queued behind data go too); progress reports whether anything
// was written.
func (w *writer) sendData() (progress bool, err error) {
	kept := w.active[:0]
	for _, st := range w.active {
		wrote, keep, err := w.sendStream(st)
		if err != nil {
			return false, err
		}
		progress = progress || wrote
		if keep {
			kept = append(kept, st)
		} else {
			st.w.active = false
			st.w.stalledAt = timeZero
		}
	}
	clear(w.active[len(kept):])
	w.active = kept
	return progress, nil
}

// sendStream writes what st's queue allows; keep reports whether st stays
// active (it has writes left that are not waiting for a kick).
func (w *writer) sendStream(st *stream) (wrote, keep bool, err error) {
	for len(st.w.out) > 0 && !st.w.done {
		it := &st.w.out[0]
		switch it.kind {
		case itemHeaders, itemTrailers:
			if err := w.writeHeaders(st, it); err != nil {
				return wrote, false, err
			}
			w.pop(st)
			wrote = true
			continue
		case itemData:
			n := min(len(it.data), w.peerMaxFrame, int(min(st.w.window, w.connWindow)))
			if n <= 0 && len(it.data) > 0 {
				return wrote, w.stalled(st), nil
			}
			end := it.end && n == len(it.data)
			if err := w.c.fr.WriteData(st.id, end, it.data[:n]); err != nil {
				return wrote, false, err
			}
			w.took(st, n)
			it.data = it.data[n:]
			if len(it.data) == 0 {
				if it.signal {
					st.wrote <- nil
					it.signal = false
				}
				w.pop(st)
				if end {
					w.finish(st)
				}
			}
			return true, len(st.w.out) > 0 && !st.w.done, nil
		case itemSplice:
			chunk, last, rerr := it.src.peek(w.peerMaxFrame)
			if rerr != nil {
				spliceEnded(it)
				w.c.resetStream(st, http2.ErrCodeCancel, rerr)
				return wrote, false, nil
			}
			if len(chunk) == 0 {
				if !last {
					return wrote, false, nil // waits for a kick
				}
				if tr := it.src.Trailers(); len(tr) > 0 {
					tit := item{kind: itemTrailers, hdr: headerBlock{header: tr}}
					if err := w.writeHeaders(st, &tit); err != nil {
						return wrote, false, err
					}
				} else {
					if err := w.c.fr.WriteData(st.id, true, nil); err != nil {
						return wrote, false, err
					}
					w.finish(st)
				}
				spliceEnded(it)
				it.src = nil
				w.pop(st)
				return true, false, nil
			}
			n := min(len(chunk), int(min(st.w.window, w.connWindow)))
			if n <= 0 {
				return wrote, w.stalled(st), nil
			}
			end := last && n == len(chunk) && len(it.src.Trailers()) == 0
			if err := w.c.fr.WriteData(st.id, end, chunk[:n]); err != nil {
				return wrote, false, err
			}
			it.src.skip(n)
			w.took(st, n)
			if end {
				spliceEnded(it)
				it.src = nil
				w.pop(st)
				w.finish(st)
				return true, false, nil
			}
			return true, true, nil
		}
	}
	return wrote, false, nil
}

func (w *writer) took(st *stream, n int) {
	st.w.window -= int64(n)
	w.connWindow -= int64(n)
	st.w.stalledAt = timeZero
}

// stalled notes that st has data but no window; it stays active, and the
// writer resets it once StallTimeout passes without a window update.
func (w *writer) stalled(st *stream) bool {
	if st.w.stalledAt.IsZero() {
		st.w.stalledAt = timeNow()
	}
	return true
}

func (w *writer) pop(st *stream) {
	it := &st.w.out[0]
	if it.buf != nil {
		putBuf(it.buf)
	}
	copy(st.w.out, st.w.out[1:])
	st.w.out[len(st.w.out)-1] = item{}
	st.w.out = st.w.out[:len(st.w.out)-1]
}

// sendMessage queues headers and body of a message on st in one push when
// the body is known; it returns true when the caller must stream the body
// with copyBody.
func (c *conn) sendMessage(st *stream, hb headerBlock, body stack.Body) (copyLater bool) {
	if body == nil || body == stack.NoBody {
		c.pushStream(item{kind: itemHeaders, st: st, hdr: hb, end: true})
		return false
	}
	switch b := body.(type) {
	case nil:
		c.pushStream(item{kind: itemHeaders, st: st, hdr: hb, end: true})
		return false
	case *recvBody, stack.Unwrapper:
		if src, outer := spliceSource(b); src != nil {
			src.attach(st)
			c.pushStream(item{kind: itemHeaders, st: st, hdr: hb}, item{kind: itemSplice, st: st, src: src, outer: outer})
			return false
		}
	case interface{ Len() int }:
		n := b.Len()
		if n == 0 {
			// NoBody, or an empty known body: read it for its trailers.
			if _, err := body.Read(nil); err == io.EOF {
				tr := body.Trailers()
				body.Close()
				if len(tr) == 0 {
					c.pushStream(item{kind: itemHeaders, st: st, hdr: hb, end: true})
				} else {
					c.pushStream(item{kind: itemHeaders, st: st, hdr: hb}, item{kind: itemTrailers, st: st, hdr: headerBlock{header: tr}})
				}
				return false
			}
		}
		if n > 0 && n <= pageSize {
			buf := getPage()
			got, err := io.ReadFull(body, (*buf)[:n])
			if err == nil {
				if _, err = body.Read(nil); err == io.EOF {
					tr := body.Trailers()
					body.Close()
					data := item{kind: itemData, st: st, data: (*buf)[:got], buf: buf, end: len(tr) == 0}
					if len(tr) == 0 {
						c.pushStream(item{kind: itemHeaders, st: st, hdr: hb}, data)
					} else {
						c.pushStream(item{kind: itemHeaders, st: st, hdr: hb}, data, item{kind: itemTrailers, st: st, hdr: headerBlock{header: tr}})
					}
					return false
				}
			}
			putPage(buf)
			c.resetStream(st, http2.ErrCodeInternal, err)
			body.Close()
			return false
		}
	}
	c.pushStream(item{kind: itemHeaders, st: st, hdr: hb})
	return true
}

// spliceSource returns the received body under body's watchers (see
// stack.Unwrapper), and body itself when it is a watcher; nil when body is
// not, at heart, a body received on another stream.
func spliceSource(body stack.Body) (src *recvBody, outer stack.Body) {
	b := body
	for {
		switch x := b.(type) {
		case *recvBody:
			if b == body {
				return x, nil
			}
			return x, body
		case stack.Unwrapper:
			b = x.Unwrap()
		default:
			return nil, nil
		}
	}
}

// spliceEnded tells a spliced body's watchers that it ended or failed:
// the Read returns at once, as the body has nothing left to wait for.
func spliceEnded(it *item) {
	if it.outer != nil {
		it.outer.Read(nil)
		it.outer.Close()
		it.outer = nil
	}
}

// copyBody streams body onto st, one page at a time: each page is handed to
// the writer and taken back once written, so no more than a page is
// buffered whatever the peer's window.
func (c *conn) copyBody(st *stream, body stack.Body) {
	defer body.Close()
	st.wrote = make(chan error, 1)
	for {
		buf := getPage()
		n, err := body.Read(*buf)
		if err != nil && err != io.EOF {
			putPage(buf)
			c.resetStream(st, http2.ErrCodeCancel, err)
			return
		}
		eof := err == io.EOF
		var tr stack.Header
		if eof {
			tr = body.Trailers()
		}
		if n > 0 || eof && len(tr) == 0 {
			// The last DATA goes with the trailers, and nothing waits for
			// it to be written: the writer returns the page.
			its := [2]item{{kind: itemData, st: st, data: (*buf)[:n], buf: buf, end: eof && len(tr) == 0, signal: !eof}}
			k := 1
			if eof && len(tr) > 0 {
				its[1] = item{kind: itemTrailers, st: st, hdr: headerBlock{header: tr}}
				k = 2
			}
			if !c.pushStream(its[:k]...) {
				return // released: the buffer is back in the pool
			}
			if eof {
				return
			}
			select {
			case werr := <-st.wrote:
				if werr != nil {
					return
				}
			case <-c.done:
				return
			}
		} else {
			putPage(buf)
		}
		if eof {
			if len(tr) > 0 {
				c.pushStream(item{kind: itemTrailers, st: st, hdr: headerBlock{header: tr}})
			}
			return
		}
	}
}

// pushStream queues a stream's items; when the writer is gone it releases
// them (buffers back, spliced sources closed, unsent requests failed).
func (c *conn) pushStream(items ...item) bool {
	if c.q.push(items...) {
		return true
	}
	for i := range items {
		c.w.release(&items[i])
	}
	return false
}
