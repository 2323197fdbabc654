package h2

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"golang.org/x/time/rate"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

var (
	errConnClosing = errors.New("h2: connection closing")
	errConnLost    = errors.New("h2: connection lost")
)

// side is what differs between the Server's and the Client's connections.
type side interface {
	// headers handles a decoded header block of stream id.
	headers(f *http2.HeadersFrame, fields []hpack.HeaderField, tooLarge bool) error
	// dispatch runs after the frames read with a stream's news were all
	// processed (a new request, a response's headers).
	dispatch(st *stream)
	// streamGone runs once a stream is closed or reset.
	streamGone(st *stream)
	peerGoAway(f *http2.GoAwayFrame)
	pingAck(data [8]byte)
	peerSettings(f *http2.SettingsFrame)
	// idle reports whether an id the peer named was never opened.
	idle(id uint32) bool
}

// conn is the part of a connection both sides share: framing, the reader's
// frame handling, flow control, stream bookkeeping and closing.
type conn struct {
	nc       net.Conn
	cfg      Config
	log      *slog.Logger
	isServer bool
	side     side

	br *connReader
	bw *connWriter
	fr *http2.Framer
	q  writeQueue
	w  writer

	// reader goroutine only
	hdec     *hpack.Decoder
	hblock   []byte
	fields   []hpack.HeaderField
	listSize uint32
	tooLarge bool
	pending  []*stream
	resets   *rate.Limiter
	lastRead atomic.Int64 // unix nanos, for keepalive
	hdrTimed bool
	// handled: on one core (w.yield), frames were handled since the reader
	// last yielded (see readLoop).
	handled bool

	flowMu        sync.Mutex
	recvConnAvail int64 // what the peer may still send on the connection
	connUnacked   int64

	mu       sync.Mutex
	streams  map[uint32]*stream
	closed   bool
	closeErr error

	done       chan struct{}
	writerDone chan struct{}
	closeOnce  sync.Once
}

// stream is one HTTP/2 stream, on either side.
type stream struct {
	id   uint32
	c    *conn
	body recvBody
	// ctx: the Server's handler context (ends when the stream does); on
	// the Client, stop unregisters the request ctx's watch.
	ctx    context.Context
	cancel context.CancelFunc

	// reader goroutine only
	notify        uint8
	undispatched  bool // server: a new request not handed to its handler yet, so nothing is queued for it
	gotHeaders    bool // server: request headers; client: final response
	contentLength int64
	received      int64

	// flowMu
	recvWindow int64
	unacked    int64
	noMoreData bool

	// c.mu
	remoteDone, localDone, reset bool

	discard atomic.Bool // request body abandoned: drop what arrives
	w       streamSend  // writer only
	wrote   chan error  // writer -> copyBody; made by copyBody before its first write

	// c.q.mu: 1 + index of st's entry in the queue's pending window
	// increments (control.windows), 0: none
	windowSlot int

	req    *stack.Request // server: the request
	err    error          // c.mu: why the stream was reset
	sent   atomic.Bool    // HEADERS written
	client *clientStream
}

const (
	notifyDispatch uint8 = 1 << iota
	notifyData
)

// init sets c up in place (the writer keeps a pointer to it).
func (c *conn) init(nc net.Conn, cfg Config, log *slog.Logger, isServer bool) {
	*c = conn{
		nc:            nc,
		cfg:           cfg,
		log:           log,
		isServer:      isServer,
		bw:            newConnWriter(nc, cfg.WriteBufferSize),
		streams:       make(map[uint32]*stream),
		done:          make(chan struct{}),
		writerDone:    make(chan struct{}),
		recvConnAvail: int64(cfg.ConnWindow),
		resets:        rate.NewLimiter(rate.Limit(cfg.ResetRate), cfg.ResetBurst),
	}
	c.br = newConnReader(nc, cfg.ReadBufferSize, func() bool { return c.activeStreams() > 0 })
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.SetMaxReadFrameSize(16384)
	c.fr.SetReuseFrames()
	c.hdec = hpack.NewDecoder(4096, c.emit)
	c.hdec.SetMaxStringLength(int(cfg.MaxHeaderListSize))
	c.q.init()
	c.w.init(c)
}

// ourSettings are sent first on every connection, with a connection
// window update to ConnWindow.
func (c *conn) ourSettings() []item {
	ss := []http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: uint32(c.cfg.StreamWindow)},
		{ID: http2.SettingMaxHeaderListSize, Val: c.cfg.MaxHeaderListSize},
	}
	if c.isServer {
		ss = append(ss, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.cfg.MaxConcurrentStreams},
			http2.Setting{ID: http2.SettingEnableConnectProtocol, Val: 1})
	} else {
		ss = append(ss, http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	}
	its := []item{{kind: itemSettings, settings: ss}}
	if c.cfg.ConnWindow > 65535 { // an increment of 0 is a protocol error
		its = append(its, item{kind: itemWindowUpdate, id: 0, incr: uint32(c.cfg.ConnWindow - 65535)})
	}
	return its
}

func (c *conn) newStream(id uint32) *stream {
	st := &stream{id: id, c: c, contentLength: -1, recvWindow: int64(c.cfg.StreamWindow)}
	st.body.init(st)
	return st
}

// kick tells st's writer that its spliced source has news.
func (c *conn) kick(st *stream) { c.q.push(item{kind: itemKick, st: st}) }

// consumed returns n bytes of receive window: those a consumer read (or
// that were dropped) on st (nil: connection only). Updates go out in
// batches, when a quarter of a window was consumed.
func (c *conn) consumed(st *stream, n int) {
	if n <= 0 {
		return
	}
	var its [2]item
	k := 0
	c.flowMu.Lock()
	c.connUnacked += int64(n)
	if c.connUnacked >= int64(c.cfg.ConnWindow/4) {
		its[k] = item{kind: itemWindowUpdate, id: 0, incr: uint32(c.connUnacked)}
		k++
		c.recvConnAvail += c.connUnacked
		c.connUnacked = 0
	}
	if st != nil && !st.noMoreData {
		st.unacked += int64(n)
		if st.unacked >= int64(c.cfg.StreamWindow/4) {
			its[k] = item{kind: itemWindowUpdate, id: st.id, incr: uint32(st.unacked)}
			k++
			st.recvWindow += st.unacked
			st.unacked = 0
		}
	}
	c.flowMu.Unlock()
	if k > 0 {
		c.q.push(its[:k]...)
	}
}

// noteRemoteDone records END_STREAM from the peer.
func (c *conn) noteRemoteDone(st *stream) {
	c.flowMu.Lock()
	st.noMoreData = true
	c.flowMu.Unlock()
	c.mu.Lock()
	st.remoteDone = true
	gone := st.localDone && !st.reset
	if gone {
		c.removeLocked(st)
	}
	c.mu.Unlock()
	if gone {
		c.side.streamGone(st)
	}
}

// localDone records that END_STREAM went out (the writer calls it).
func (c *conn) localDone(st *stream) {
	c.mu.Lock()
	st.localDone = true
	gone := st.remoteDone && !st.reset
	if gone {
		c.removeLocked(st)
	}
	// A complete response to a request still being sent: as net/http and
	// grpc-go do, tell the client to stop (RST_STREAM NO_ERROR), which
	// frees the stream. A CONNECT tunnel stays half-open instead.
	stopClient := !gone && !st.reset && !st.remoteDone && c.isServer && st.req != nil && st.req.Method != "CONNECT"
	c.mu.Unlock()
	if gone {
		c.side.streamGone(st)
	}
	if stopClient {
		c.resetStream(st, http2.ErrCodeNo, errResponseDone)
	}
}

var errResponseDone = errors.New("h2: response complete, rest of the request not needed")

func (c *conn) removeLocked(st *stream) {
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
	}
}

// resetStream ends st from our side with RST_STREAM code.
func (c *conn) resetStream(st *stream, code http2.ErrCode, err error) {
	if !c.markReset(st, err) {
		return
	}
	st.body.fail(err)
	c.q.push(item{kind: itemRST, st: st, code: code})
	c.side.streamGone(st)
}

// peerReset ends st after the peer's RST_STREAM.
func (c *conn) peerReset(st *stream, code http2.ErrCode) {
	serr := http2.StreamError{StreamID: st.id, Code: code}
	if !c.markReset(st, serr) {
		return
	}
	st.body.fail(serr)
	if !st.undispatched {
		// A request reset before its handler ran has nothing queued: no
		// item keeps it alive until the writer gets to it (rapid reset).
		c.q.push(item{kind: itemDrop, st: st})
	}
	c.side.streamGone(st)
}

func (c *conn) markReset(st *stream, err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.reset || st.localDone && st.remoteDone || c.closed {
		return false
	}
	st.reset = true
	st.err = err
	c.removeLocked(st)
	return true
}

// abandonBody: the consumer closed st's body before its end.
func (c *conn) abandonBody(st *stream) {
	if c.isServer {
		// The handler may still answer: keep the stream, drop the rest of
		// the request body (its window is returned as it arrives).
		st.discard.Store(true)
		return
	}
	c.resetStream(st, http2.ErrCodeCancel, errBodyClosed)
}

// goAway ends the connection with a GOAWAY carrying code, after what is
// queued.
func (c *conn) goAway(code http2.ErrCode, reason string) {
	if code != http2.ErrCodeNo {
		c.log.Debug("h2: connection error", "code", code, "reason", reason, "peer", c.nc.RemoteAddr())
	}
	c.q.push(item{kind: itemGoAway, id: c.lastPeerStream(), code: code, closeAfter: true})
	// A peer that does not read must not hold the connection open.
	time.AfterFunc(goAwayGrace, func() { c.closeNow(errConnClosing) })
}

func (c *conn) lastPeerStream() uint32 {
	if sc, ok := c.side.(*serverConn); ok {
		return sc.lastStream()
	}
	return 0
}

// closeNow closes the connection and fails every stream.
func (c *conn) closeNow(err error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.closeErr = err
		streams := make([]*stream, 0, len(c.streams))
		for _, st := range c.streams {
			st.reset = true
			st.err = err
			streams = append(streams, st)
		}
		clear(c.streams)
		c.mu.Unlock()
		close(c.done)
		c.q.close()
		c.nc.Close()
		for _, st := range streams {
			st.body.fail(errConnLost)
			c.side.streamGone(st)
		}
	})
}

// stream returns the open stream id, or nil.
func (c *conn) stream(id uint32) *stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams[id]
}

func (c *conn) activeStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams)
}

// pushProvoked queues an answer to the peer; a peer that makes us queue
// more than MaxQueuedControlFrames gets GOAWAY ENHANCE_YOUR_CALM.
func (c *conn) pushProvoked(it item) error {
	if _, overflow := c.q.pushProvoked(it, c.cfg.MaxQueuedControlFrames); overflow {
		return connError{http2.ErrCodeEnhanceYourCalm, "too many queued control frames"}
	}
	return nil
}

// provoke records an answer owed to the peer in the writer's control
// state (see control); past MaxQueuedControlFrames waiting answers the
// peer gets GOAWAY ENHANCE_YOUR_CALM.
func (c *conn) provoke(fn func(*control)) error {
	if c.q.provoke(c.cfg.MaxQueuedControlFrames, fn) {
		return connError{http2.ErrCodeEnhanceYourCalm, "too many queued control frames"}
	}
	return nil
}

type connError struct {
	code   http2.ErrCode
	reason string
}

func (e connError) Error() string { return "h2: connection error " + e.code.String() + ": " + e.reason }
