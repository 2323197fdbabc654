package h2

import (
	"bytes"
	"errors"
	"math"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// writer is a connection's only writer goroutine (grpc-go's loopyWriter):
// it takes what the queue holds, frames it into the buffered writer, sends
// stream data as the peer's windows allow, and flushes only when it has
// nothing more to do, so everything that was ready together leaves in one
// write. It owns the send side of flow control.
//
// "Ready together" includes streams whose goroutines are runnable but have
// not run yet: on one core (the proxy's default), the requests of several
// connections that one poll found readable run one after the other, and the
// first one's push makes the writer runnable next. So before a flush the
// writer yields once (runtime.Gosched puts it behind every runnable
// goroutine), and the others' frames join the same write. With nothing
// else runnable the yield returns at once. With more than one core it is
// skipped: Gosched would wake an idle core for nothing.
type writer struct {
	c              *conn
	yield          bool // yield before a flush (one core)
	enc            *hpack.Encoder
	encBuf         bytes.Buffer
	connWindow     int64
	peerInitWindow int64
	peerMaxFrame   int
	streams        map[uint32]*stream // streams with send state
	active         []*stream          // streams with queued writes
	stallTimer     *time.Timer
	pendingAcks    [][8]byte // PING answers not yet written
	ackTimer       *time.Timer
	ctl            control // the peer's control frames taken with a batch
}

// maxPendingAcks PING answers are written at once without waiting for
// other frames.
const maxPendingAcks = 16

func (w *writer) writeAcks() error {
	for _, p := range w.pendingAcks {
		if err := w.c.fr.WritePing(true, p); err != nil {
			return err
		}
	}
	w.pendingAcks = w.pendingAcks[:0]
	return nil
}

// streamSend is the part of a stream only the writer touches.
type streamSend struct {
	init      bool
	done      bool // END_STREAM or RST_STREAM written, or dropped
	active    bool
	headers   bool // HEADERS written
	window    int64
	out       []item
	outBuf    [2]item // out's first storage: most streams queue no more
	stalledAt time.Time
}

var errStreamReset = errors.New("h2: stream reset")

func (w *writer) init(c *conn) {
	w.c = c
	w.enc = hpack.NewEncoder(&w.encBuf)
	w.connWindow = 65535
	w.peerInitWindow = 65535
	w.peerMaxFrame = 16384
	w.streams = make(map[uint32]*stream)
	w.yield = runtime.GOMAXPROCS(0) == 1
}

func (w *writer) run() {
	c := w.c
	defer close(c.writerDone)
	yielded := false
	for {
		batch := c.q.take(&w.ctl)
		for i := range batch {
			if err := w.handle(&batch[i]); err != nil {
				w.fail(err)
				return
			}
			if batch[i].kind == itemFlushClose || batch[i].kind == itemGoAway && batch[i].closeAfter {
				w.closeGracefully()
				w.fail(errConnClosing)
				return
			}
		}
		if err := w.handleControl(&w.ctl); err != nil {
			w.fail(err)
			return
		}
		progress, err := w.sendData()
		if err != nil {
			w.fail(err)
			return
		}
		if progress || c.q.pending() {
			continue
		}
		if w.yield && !yielded && c.bw.Buffered() > 0 {
			yielded = true
			runtime.Gosched()
			if c.q.pending() {
				continue
			}
		}
		yielded = false
		// PING answers ride with the next frames written; alone, they wait
		// up to PingAckDelay for company.
		if len(w.pendingAcks) > 0 && (c.bw.Buffered() > 0 || c.cfg.PingAckDelay < 0 || len(w.pendingAcks) >= maxPendingAcks) {
			if err := w.writeAcks(); err != nil {
				w.fail(err)
				return
			}
		}
		if err := c.bw.Flush(); err != nil {
			w.fail(err)
			return
		}
		if !w.wait() {
			w.fail(errConnClosing)
			return
		}
	}
}

// wait blocks until the queue has items or a stalled stream's time is up;
// false when the connection is closing.
func (w *writer) wait() bool {
	c := w.c
	var timeout <-chan time.Time
	if first := w.firstStall(); !first.IsZero() {
		d := time.Until(first.Add(c.cfg.StallTimeout))
		if w.stallTimer == nil {
			w.stallTimer = time.NewTimer(d)
		} else {
			w.stallTimer.Reset(d)
		}
		timeout = w.stallTimer.C
	}
	var ackTimeout <-chan time.Time
	if len(w.pendingAcks) > 0 {
		if w.ackTimer == nil {
			w.ackTimer = time.NewTimer(c.cfg.PingAckDelay)
		} else {
			w.ackTimer.Reset(c.cfg.PingAckDelay)
		}
		ackTimeout = w.ackTimer.C
	}
	select {
	case <-c.q.wake:
	case <-timeout:
		w.resetStalled()
	case <-ackTimeout:
		if w.writeAcks() != nil || c.bw.Flush() != nil {
			return false
		}
	case <-c.done:
		return false
	}
	if w.stallTimer != nil {
		w.stallTimer.Stop()
	}
	if w.ackTimer != nil {
		w.ackTimer.Stop()
	}
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (w *writer) firstStall() time.Time {
	var first time.Time
	for _, st := range w.active {
		if t := st.w.stalledAt; !t.IsZero() && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	return first
}

func (w *writer) resetStalled() {
	now := time.Now()
	for _, st := range w.active {
		if t := st.w.stalledAt; !t.IsZero() && now.Sub(t) >= w.c.cfg.StallTimeout {
			w.c.log.Debug("h2: resetting stream stalled on flow control", "stream", st.id)
			w.c.resetStream(st, http2.ErrCodeCancel, errStalled)
		}
	}
}

var errStalled = errors.New("h2: stream stalled on flow control")

// goAwayGrace is how long a connection whose last frames (a GOAWAY) were
// written stays half-open for the peer to read them: closing at once with
// the peer's bytes unread would reset the connection, and the peer could
// lose what it had not read yet.
const goAwayGrace = time.Second

// closeGracefully flushes, half-closes, and closes once the peer did or
// goAwayGrace passed.
func (w *writer) closeGracefully() {
	c := w.c
	if c.bw.Flush() == nil {
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
			t := time.NewTimer(goAwayGrace)
			select {
			case <-c.done:
			case <-t.C:
			}
			t.Stop()
		}
	}
	c.closeNow(errConnClosing)
}

// fail ends the writer: every waiting stream is released.
func (w *writer) fail(err error) {
	w.c.closeNow(err)
	for _, st := range w.streams {
		w.drop(st)
	}
	for _, st := range w.active {
		w.drop(st)
	}
	for _, it := range w.c.q.take(&w.ctl) {
		w.release(&it)
	}
}

func (w *writer) sendInit(st *stream) {
	if !st.w.init {
		st.w.init = true
		st.w.out = st.w.outBuf[:0]
		st.w.window = w.peerInitWindow
		w.streams[st.id] = st
	}
}

func (w *writer) handle(it *item) error {
	c := w.c
	switch it.kind {
	case itemHeaders, itemData, itemSplice, itemTrailers:
		st := it.st
		if st.id == 0 && !w.open(st) {
			w.release(it)
			return nil
		}
		w.sendInit(st)
		if st.w.done {
			w.release(it)
			return nil
		}
		if it.kind == itemHeaders && len(st.w.out) == 0 {
			return w.writeHeaders(st, it)
		}
		st.w.out = append(st.w.out, *it)
		w.activate(st)
	case itemKick:
		if it.st.w.init && !it.st.w.done && len(it.st.w.out) > 0 {
			w.activate(it.st)
		}
	case itemRST:
		id := it.id
		if it.st != nil {
			id = it.st.id
			wrote := it.st.w.headers || c.isServer
			w.drop(it.st)
			if !wrote {
				return nil // never opened on the wire: nothing to reset
			}
		}
		return c.fr.WriteRSTStream(id, it.code)
	case itemDrop:
		w.drop(it.st)
	case itemWindowUpdate:
		return c.fr.WriteWindowUpdate(it.id, it.incr)
	case itemPing:
		return c.fr.WritePing(false, it.ping)
	case itemGoAway:
		return c.fr.WriteGoAway(it.id, it.code, nil)
	case itemRaw:
		_, err := c.bw.Write(it.data)
		return err
	case itemSettings:
		return c.fr.WriteSettings(it.settings...)
	}
	return nil
}

func (w *writer) activate(st *stream) {
	if !st.w.active {
		st.w.active = true
		w.active = append(w.active, st)
	}
}

// drop forgets a reset stream's queued writes and releases their owners.
func (w *writer) drop(st *stream) {
	if st.w.done && len(st.w.out) == 0 {
		return
	}
	st.w.done = true
	for i := range st.w.out {
		w.release(&st.w.out[i])
	}
	clear(st.w.out)
	st.w.out = st.w.out[:0]
	delete(w.streams, st.id)
}

// release gives back what an unwritten item holds. It is safe from any
// goroutine (the queue's pushers call it when the writer is gone).
func (w *writer) release(it *item) {
	if it.kind == itemHeaders && it.st != nil && it.st.client != nil && it.st.id == 0 {
		w.c.failUnsent(it.st, errConnLost) // a request that never went out
	}
	if it.buf != nil {
		putBuf(it.buf)
		it.buf = nil
	}
	if it.outer != nil {
		it.outer.Close() // closes src, which it wraps
		it.outer = nil
	} else if it.src != nil {
		it.src.Close()
	}
	if it.signal {
		select {
		case it.st.wrote <- errStreamReset:
		default:
		}
	}
}

// handleControl answers the peer's control frames taken with a batch,
// after the batch (our SETTINGS, first on the connection, may be in it).
func (w *writer) handleControl(ctl *control) error {
	if ctl.settingsAcks > 0 {
		if err := w.applySettings(ctl.peer); err != nil {
			return err
		}
		for range ctl.settingsAcks {
			if err := w.c.fr.WriteSettingsAck(); err != nil {
				return err
			}
		}
	}
	if ctl.connIncr > 0 {
		if err := w.peerWindow(nil, ctl.connIncr); err != nil {
			return err
		}
	}
	for _, pw := range ctl.windows {
		if err := w.peerWindow(pw.st, pw.incr); err != nil {
			return err
		}
	}
	for _, p := range ctl.pings {
		w.pendingAcks = append(w.pendingAcks, p)
		if len(w.pendingAcks) >= maxPendingAcks {
			if err := w.writeAcks(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *writer) peerWindow(st *stream, incr int64) error {
	if st == nil {
		w.connWindow += incr
		if w.connWindow > math.MaxInt32 {
			w.c.goAway(http2.ErrCodeFlowControl, "connection window overflow")
			return nil
		}
		return nil
	}
	w.sendInit(st)
	if st.w.done {
		return nil
	}
	st.w.window += incr
	if st.w.window > math.MaxInt32 {
		w.c.resetStream(st, http2.ErrCodeFlowControl, errStreamReset)
		return nil
	}
	if len(st.w.out) > 0 {
		w.activate(st)
	}
	return nil
}

func (w *writer) applySettings(ps peerSettings) error {
	if ps.hasWindow {
		delta := int64(ps.window) - w.peerInitWindow
		w.peerInitWindow = int64(ps.window)
		for _, st := range w.streams {
			st.w.window += delta
			if st.w.window > math.MaxInt32 {
				w.c.goAway(http2.ErrCodeFlowControl, "stream window overflow")
				return nil
			}
		}
	}
	if ps.hasFrame {
		w.peerMaxFrame = int(ps.frame)
	}
	if ps.hasTable {
		w.enc.SetMaxDynamicTableSizeLimit(min(ps.table, 4096))
	}
	for _, st := range w.active {
		st.w.stalledAt = time.Time{}
	}
	return nil
}

var statusText [600]string

func init() {
	for i := 100; i < len(statusText); i++ {
		statusText[i] = strconv.Itoa(i)
	}
}

func (w *writer) encode(name, value string) {
	w.enc.WriteField(hpack.HeaderField{Name: name, Value: value})
}

func (w *writer) writeHeaders(st *stream, it *item) error {
	hb := &it.hdr
	w.encBuf.Reset()
	if it.kind == itemHeaders {
		if hb.status != 0 {
			s := statusText[0]
			if hb.status >= 100 && hb.status < len(statusText) {
				s = statusText[hb.status]
			}
			w.encode(":status", s)
		} else {
			w.encode(":method", hb.method)
			plainConnect := hb.method == "CONNECT" && hb.protocol == ""
			if !plainConnect {
				w.encode(":scheme", hb.scheme)
			}
			w.encode(":authority", hb.authority)
			if !plainConnect {
				w.encode(":path", hb.path)
			}
			if hb.protocol != "" {
				w.encode(":protocol", hb.protocol)
			}
		}
	}
	for _, f := range hb.header {
		if !sendableField(f.Name, f.Value) {
			continue
		}
		w.encode(f.Name, f.Value)
	}
	block := w.encBuf.Bytes()
	end := it.end || it.kind == itemTrailers
	first := true
	for first || len(block) > 0 {
		chunk := block
		if len(chunk) > w.peerMaxFrame {
			chunk = chunk[:w.peerMaxFrame]
		}
		block = block[len(chunk):]
		var err error
		if first {
			err = w.c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: chunk, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			err = w.c.fr.WriteContinuation(st.id, len(block) == 0, chunk)
		}
		if err != nil {
			return err
		}
	}
	st.w.headers = true
	st.sent.Store(true)
	if end {
		w.finish(st)
	}
	return nil
}

// finish notes that END_STREAM went out.
func (w *writer) finish(st *stream) {
	st.w.done = true
	delete(w.streams, st.id)
	w.c.localDone(st)
}

var timeZero time.Time

func timeNow() time.Time { return time.Now() }
