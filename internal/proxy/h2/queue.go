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
	itemPeerWindow   // the peer granted incr on st (nil: connection)
	itemPeerSettings // apply settings, then ACK them
	itemPing         // ping (ack: an answer)
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
	peer       peerSettings
}

// peerSettings are the peer's SETTINGS values the writer applies.
type peerSettings struct {
	hasWindow, hasFrame, hasTable bool
	window, frame, table          uint32
}

// writeQueue hands items from any goroutine to the connection's writer.
// push never blocks: bounds are enforced by whoever pushes (flow control,
// MaxQueuedControlFrames).
type writeQueue struct {
	mu       sync.Mutex
	items    []item
	spare    []item
	provoked int
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
	wasEmpty := len(q.items) == 0
	for i := range items {
		if items[i].provoked {
			q.provoked++
		}
	}
	q.items = append(q.items, items...)
	q.mu.Unlock()
	if wasEmpty {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return true
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

// take returns the queued items (the slice is reused by the next take).
func (q *writeQueue) take() []item {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.items
	clear(q.spare)
	q.items = q.spare[:0]
	q.spare = out
	q.provoked = 0
	return out
}

func (q *writeQueue) pending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) > 0
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
