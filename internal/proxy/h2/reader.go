package h2

import (
	"errors"
	"io"
	"net"
	"runtime"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// readLoop is the connection's reader: it handles frames until the
// connection ends. Streams' news (a new request, a response, data) are
// handed on only once the frames already read are processed, so a HEADERS
// followed by its RST_STREAM in the same read never starts a handler, and
// a response's HEADERS, DATA and trailers that arrived together are passed
// on together.
func (c *conn) readLoop() error {
	for {
		if len(c.pending) > 0 || c.handled {
			buffered := c.frameBuffered()
			if len(c.pending) > 0 && (!buffered || len(c.pending) >= maxPendingNews && !c.resetBuffered()) {
				c.flushPending()
			}
			if c.handled && !buffered {
				// The frames just handled have made goroutines runnable: a
				// stream's handler, a Serve waiting for its response, a body's
				// reader. On one core they would wait until this goroutine
				// blocks, that is, through its next read, which mostly finds
				// the connection empty (a system call) and parks: 3-4 µs on
				// every request's way through the proxy (an execution trace,
				// docs/performance.md). Yielding lets them run first; with
				// nothing else runnable it returns at once.
				c.handled = false
				runtime.Gosched()
			}
		}
		fh, err := c.fr.ReadFrameHeader()
		if err != nil {
			return c.readError(err)
		}
		if fh.Type == http2.FrameHeaders && c.isServer && !c.headerBlockBuffered(fh) {
			c.nc.SetReadDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
			c.hdrTimed = true
		}
		f, err := c.fr.ReadFrameForHeader(fh)
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				if err := c.streamError(se.StreamID, se.Code); err != nil {
					return c.readError(err)
				}
				continue
			}
			return c.readError(err)
		}
		if !c.isServer {
			c.lastRead.Store(time.Now().UnixNano())
		}
		if err := c.handleFrame(f); err != nil {
			return c.readError(err)
		}
		c.handled = c.w.yield
	}
}

// headerBlockBuffered reports whether the HEADERS frame fh heads is
// already in the read buffer and ends its header block: then reading the
// block cannot wait on the client, and needs no deadline (each set is a
// runtime timer changed, twice per request).
func (c *conn) headerBlockBuffered(fh http2.FrameHeader) bool {
	return fh.Flags.Has(http2.FlagHeadersEndHeaders) && c.br.Buffered() >= int(fh.Length)
}

// frameBuffered reports whether a whole frame is already in the read buffer.
func (c *conn) frameBuffered() bool {
	n := c.br.Buffered()
	if n < 9 {
		return false
	}
	h := c.br.peek(9)
	return n >= 9+(int(h[0])<<16|int(h[1])<<8|int(h[2]))
}

// maxPendingNews bounds the streams whose news wait for the frames read
// with them: requests each reset at once (rapid reset) are handed on, and
// dropped, a few dozen at a time rather than a read buffer's worth (some
// 500 streams and their requests alive at once per connection). A
// RST_STREAM next in the buffer is read first, so the bound does not
// start the handler of a request whose reset was read with it.
const maxPendingNews = 64

// resetBuffered reports whether the next buffered frame is a RST_STREAM.
func (c *conn) resetBuffered() bool {
	h := c.br.peek(9)
	return h != nil && http2.FrameType(h[3]) == http2.FrameRSTStream
}

func (c *conn) schedule(st *stream, what uint8) {
	if st.notify == 0 {
		c.pending = append(c.pending, st)
	}
	st.notify |= what
}

func (c *conn) flushPending() {
	for i, st := range c.pending {
		what := st.notify
		st.notify = 0
		c.pending[i] = nil
		if what&notifyDispatch != 0 {
			st.undispatched = false
			c.side.dispatch(st)
		}
		if what&notifyData != 0 {
			st.body.signal()
		}
	}
	c.pending = c.pending[:0]
}

// readError turns what ended the read loop into the connection's end.
func (c *conn) readError(err error) error {
	var ce connError
	var h2ce http2.ConnectionError
	switch {
	case errors.Is(err, http2.ErrFrameTooLarge):
		c.goAway(http2.ErrCodeFrameSize, "frame too large")
	case errors.As(err, &ce):
		c.goAway(ce.code, ce.reason)
	case errors.As(err, &h2ce):
		c.goAway(http2.ErrCode(h2ce), "protocol")
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.goAway(http2.ErrCodeNo, "read timeout")
		} else {
			c.closeNow(errConnLost)
		}
		if err == io.EOF {
			return nil
		}
	}
	return err
}

// streamError resets stream id with code (a stream error of RFC 9113).
// Resets the peer provokes count against the same rate as the ones it
// sends ("MadeYouReset", CVE-2025-8671, is rapid reset by proxy).
func (c *conn) streamError(id uint32, code http2.ErrCode) error {
	if c.isServer && code != http2.ErrCodeStreamClosed && !c.resets.Allow() {
		return connError{http2.ErrCodeEnhanceYourCalm, "too many stream errors"}
	}
	if st := c.stream(id); st != nil {
		c.resetStream(st, code, http2.StreamError{StreamID: id, Code: code})
		return nil
	}
	return c.pushProvoked(item{kind: itemRST, id: id, code: code})
}

func (c *conn) handleFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.HeadersFrame:
		return c.onHeaders(f)
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return c.streamError(f.StreamID, http2.ErrCodeProtocol)
		}
	case *http2.RSTStreamFrame:
		return c.onRST(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.PushPromiseFrame:
		return connError{http2.ErrCodeProtocol, "PUSH_PROMISE"}
	case *http2.PingFrame:
		if f.IsAck() {
			c.side.pingAck(f.Data)
			return nil
		}
		data := f.Data
		return c.provoke(func(ctl *control) { ctl.pings = append(ctl.pings, data) })
	case *http2.GoAwayFrame:
		c.side.peerGoAway(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	}
	return nil
}

func (c *conn) onData(f *http2.DataFrame) error {
	length := int64(f.Length)
	c.flowMu.Lock()
	c.recvConnAvail -= length
	over := c.recvConnAvail < 0
	c.flowMu.Unlock()
	if over {
		return connError{http2.ErrCodeFlowControl, "connection window exceeded"}
	}
	st := c.stream(f.StreamID)
	if st == nil || st.remoteDoneSeen() {
		c.consumed(nil, int(length))
		if st == nil && c.side.idle(f.StreamID) {
			return connError{http2.ErrCodeProtocol, "DATA on idle stream"}
		}
		return c.streamError(f.StreamID, http2.ErrCodeStreamClosed)
	}
	if !st.gotHeaders {
		return c.streamError(f.StreamID, http2.ErrCodeProtocol)
	}
	c.flowMu.Lock()
	st.recvWindow -= length
	over = st.recvWindow < 0
	c.flowMu.Unlock()
	if over {
		c.consumed(nil, int(length))
		return c.streamError(f.StreamID, http2.ErrCodeFlowControl)
	}
	data := f.Data()
	st.received += int64(len(data))
	if st.contentLength >= 0 && (st.received > st.contentLength || f.StreamEnded() && st.received != st.contentLength) {
		c.consumed(nil, int(length))
		return c.streamError(f.StreamID, http2.ErrCodeProtocol)
	}
	if pad := int(length) - len(data); pad > 0 {
		c.consumed(st, pad)
	}
	if len(data) > 0 {
		if st.discard.Load() || !st.body.append(data) {
			c.consumed(st, len(data))
		} else {
			c.schedule(st, notifyData)
		}
	}
	if f.StreamEnded() {
		st.body.end(nil)
		c.schedule(st, notifyData)
		c.noteRemoteDone(st)
	}
	return nil
}

func (st *stream) remoteDoneSeen() bool {
	st.c.mu.Lock()
	defer st.c.mu.Unlock()
	return st.remoteDone
}

func (c *conn) onRST(f *http2.RSTStreamFrame) error {
	st := c.stream(f.StreamID)
	if st == nil {
		if c.side.idle(f.StreamID) {
			return connError{http2.ErrCodeProtocol, "RST_STREAM on idle stream"}
		}
		return nil
	}
	if c.isServer && !c.resets.Allow() {
		return connError{http2.ErrCodeEnhanceYourCalm, "too many stream resets"}
	}
	c.peerReset(st, f.ErrCode)
	return nil
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	// Only the last value of each setting the writer uses is kept, so a
	// queued SETTINGS costs a fixed size whatever the frame holds.
	var ps peerSettings
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			ps.window, ps.hasWindow = s.Val, true
		case http2.SettingMaxFrameSize:
			ps.frame, ps.hasFrame = s.Val, true
		case http2.SettingHeaderTableSize:
			ps.table, ps.hasTable = s.Val, true
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.side.peerSettings(f)
	return c.provoke(func(ctl *control) {
		ctl.settingsAcks++
		ctl.peer.merge(ps)
	})
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	incr := int64(f.Increment)
	if f.StreamID == 0 {
		return c.provoke(func(ctl *control) { ctl.connIncr += incr })
	}
	st := c.stream(f.StreamID)
	if st == nil {
		if c.side.idle(f.StreamID) {
			return connError{http2.ErrCodeProtocol, "WINDOW_UPDATE on idle stream"}
		}
		return nil
	}
	return c.provoke(func(ctl *control) { ctl.addWindow(st, incr) })
}

// onHeaders reads the rest of a header block (its CONTINUATIONs) and
// decodes it, then hands it to the side.
func (c *conn) onHeaders(f *http2.HeadersFrame) error {
	size := 9 + int(f.Length)
	c.hblock = append(c.hblock[:0], f.HeaderBlockFragment()...)
	ended := f.HeadersEnded()
	for !ended {
		fh, err := c.fr.ReadFrameHeader()
		if err != nil {
			return err
		}
		size += 9 + int(fh.Length)
		if size > c.cfg.MaxHeaderBlock {
			return connError{http2.ErrCodeEnhanceYourCalm, "header block too large"}
		}
		cf, err := c.fr.ReadFrameForHeader(fh)
		if err != nil {
			return err
		}
		cont := cf.(*http2.ContinuationFrame) // the Framer checks the order
		c.hblock = append(c.hblock, cont.HeaderBlockFragment()...)
		ended = cont.HeadersEnded()
	}
	if c.hdrTimed {
		c.nc.SetReadDeadline(time.Time{})
		c.hdrTimed = false
	}
	if size > c.cfg.MaxHeaderBlock {
		return connError{http2.ErrCodeEnhanceYourCalm, "header block too large"}
	}
	c.fields = c.fields[:0]
	c.listSize = 0
	c.tooLarge = false
	c.hdec.SetEmitEnabled(true)
	if _, err := c.hdec.Write(c.hblock); err != nil {
		return connError{http2.ErrCodeCompression, "header block: " + err.Error()}
	}
	if err := c.hdec.Close(); err != nil {
		return connError{http2.ErrCodeCompression, "header block: " + err.Error()}
	}
	return c.side.headers(f, c.fields, c.tooLarge)
}

// emit collects decoded fields up to MaxHeaderListSize; past it the
// decoder goes on (its table must stay in step) but keeps nothing.
func (c *conn) emit(hf hpack.HeaderField) {
	c.listSize += hf.Size()
	if c.listSize > c.cfg.MaxHeaderListSize {
		c.tooLarge = true
		c.hdec.SetEmitEnabled(false)
		return
	}
	c.fields = append(c.fields, hf)
}
