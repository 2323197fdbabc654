package h2

import (
	"sync"

	"golang.org/x/net/http2"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

type itemKind uint8

const (
	// stream items: queued per stream, written in order
	itemHeaders  itemKind = iota // hdr, end
	itemData                     // data (pool returned after), end, signal
	itemSplice                   // src pulled until its end, then its trailers
	itemTrailers                 // hdr, END_STREAM
	// connection items
	itemKick         // st's spliced source has news
	itemRST          // write RST_STREAM (st, or id when there is no stream)
	itemDrop         // st was reset by the peer: drop its queued writes
	itemWindowUpdate // grant the peer incr more bytes on id (0: connection)
	itemPing         // our PING (the answers to the peer's are in control)
	itemGoAway       // id, code; closeAfter: then close the connection
	itemRaw          // bytes written as they are (client preface)
	itemSettings     // our SETTINGS
	itemFlushClose   // flush and close the connection (graceful end)
)

// headerBlock is what a HEADERS frame carries before encoding.
type headerBlock struct {
	status                                    int
	method, scheme, authority, path, protocol string
	header                                    stack.Header
}

// item is one entry of a connection's write queue.
type item struct {
	kind       itemKind
	end        bool
	signal     bool // tell st.wrote when data was written
	closeAfter bool
	provoked   bool // queued in answer to the peer: counts against MaxQueuedControlFrames
	code       http2.ErrCode
	id         uint32
	incr       uint32
	st         *stream
	hdr        headerBlock
	data       []byte
	buf        *[]byte // pooled buffer holding data, returned once written
	src        *recvBody
	outer      stack.Body // the watchers src is wrapped in (stack.Unwrapper), told of its end
	ping       [8]byte
	settings   []http2.Setting // ours
}

// peerSettings are the peer's SETTINGS values the writer applies.
type peerSettings struct {
	hasWindow, hasFrame, hasTable bool
	window, frame, table          uint32
}

// merge lets later values override earlier ones: applying the merged
// SETTINGS once leaves the writer where applying each in turn would (an
// initial window change shifts every stream's window by the same delta).
func (ps *peerSettings) merge(o peerSettings) {
	if o.hasWindow {
		ps.window, ps.hasWindow = o.window, true
	}
	if o.hasFrame {
		ps.frame, ps.hasFrame = o.frame, true
	}
	if o.hasTable {
		ps.table, ps.hasTable = o.table, true
	}
}

// control is what the peer's SETTINGS, PING and WINDOW_UPDATE frames ask
// of the writer, coalesced so that a flood of them costs a fixed size
// rather than an item each: the SETTINGS values merged and the ACKs owed,
// the PING payloads to echo (8 bytes each), the window increments summed
// per stream.
type control struct {
	settingsAcks int
	peer         peerSettings
	pings        [][8]byte
	connIncr     int64
	windows      []peerIncr
}

// peerIncr is window the peer granted on st, not yet applied.
type peerIncr struct {
	st   *stream
	incr int64
}

// addWindow sums an increment the peer granted on st with the pending
// ones (the caller holds the queue's lock).
func (ctl *control) addWindow(st *stream, incr int64) {
	if st.windowSlot == 0 {
		ctl.windows = append(ctl.windows, peerIncr{st: st})
		st.windowSlot = len(ctl.windows)
	}
	ctl.windows[st.windowSlot-1].incr += incr
}

// maxKeptItems bounds the backing arrays the queue keeps between takes: a
// burst that queued more gives its arrays back to the garbage collector
// rather than holding them for the connection's life.
const maxKeptItems = 256

// writeQueue hands items from any goroutine to the connection's writer.
// push never blocks: bounds are enforced by whoever pushes (flow control,
// MaxQueuedControlFrames).
type writeQueue struct {
	mu       sync.Mutex
	items    []item
	spare    []item
	ctl      control
	provoked int // answers to the peer waiting (items and control)
	closed   bool
	wake     chan struct{}
}

func (q *writeQueue) init() { q.wake = make(chan struct{}, 1) }

// push queues items in order, atomically with respect to other pushes;
// it reports false when the writer is gone.
func (q *writeQueue) push(items ...item) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	wasEmpty := len(q.items) == 0 && q.provoked == 0
	for i := range items {
		if items[i].provoked {
			q.provoked++
		}
	}
	q.items = append(q.items, items...)
	q.mu.Unlock()
	if wasEmpty {
		q.signal()
	}
	return true
}

func (q *writeQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// provoke records one more answer owed to the peer, with fn updating the
// control state under the queue's lock; it reports overflow, and changes
// nothing, when limit answers are already waiting.
func (q *writeQueue) provoke(limit int, fn func(*control)) (overflow bool) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	if q.provoked >= limit {
		q.mu.Unlock()
		return true
	}
	wasEmpty := len(q.items) == 0 && q.provoked == 0
	q.provoked++
	fn(&q.ctl)
	q.mu.Unlock()
	if wasEmpty {
		q.signal()
	}
	return false
}

// pushProvoked queues an answer to the peer unless too many are waiting.
func (q *writeQueue) pushProvoked(it item, limit int) (ok, overflow bool) {
	q.mu.Lock()
	if q.provoked >= limit {
		q.mu.Unlock()
		return false, true
	}
	q.mu.Unlock()
	it.provoked = true
	return q.push(it), false
}

// take returns the queued items (the slice is reused by the next take)
// and moves the control state into ctl (whose slices it reuses).
func (q *writeQueue) take(ctl *control) []item {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.items
	clear(q.spare)
	if cap(q.spare) > maxKeptItems {
		q.spare = nil
	}
	q.items = q.spare[:0]
	q.spare = out
	q.provoked = 0
	pings, windows := ctl.pings[:0], ctl.windows[:0]
	clear(ctl.windows[:cap(ctl.windows)])
	if cap(pings) > maxKeptItems {
		pings = nil
	}
	if cap(windows) > maxKeptItems {
		windows = nil
	}
	for _, pw := range q.ctl.windows {
		pw.st.windowSlot = 0
	}
	*ctl = q.ctl
	q.ctl = control{pings: pings, windows: windows}
	return out
}

func (q *writeQueue) pending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) > 0 || q.provoked > 0
}

func (q *writeQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}
