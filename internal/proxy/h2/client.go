package h2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

var (
	errClientClosed  = errors.New("h2: client closed")
	errGoneAway      = errors.New("h2: upstream connection going away")
	errNoConnect     = errors.New("h2: upstream does not accept extended CONNECT")
	errKeepalive     = errors.New("h2: upstream did not answer keepalive PING")
	keepalivePayload = [8]byte{'s', 'k', 'n', 'k', 'e', 'e', 'p', 'a'}
)

// Client sends requests to one upstream address over a pool of HTTP/2
// connections: each carries as many streams as the peer allows, and a new
// one is dialed when all are full.
type Client struct {
	dial func(ctx context.Context) (net.Conn, error)
	cfg  Config
	log  *slog.Logger

	mu      sync.Mutex
	conns   []*clientConn
	dialing *dialCall
	closed  bool
}

type dialCall struct {
	done chan struct{}
	err  error
}

// NewClient returns a Client whose connections come from dial.
func NewClient(dial func(ctx context.Context) (net.Conn, error), cfg Config, log *slog.Logger) *Client {
	if log == nil {
		log = slog.Default()
	}
	return &Client{dial: dial, cfg: cfg.withDefaults(), log: log}
}

// clientConn is one upstream connection of a Client.
type clientConn struct {
	conn
	pool *Client
	// c.mu
	nextID          uint32
	inflight        uint32 // streams reserved or open
	peerMaxStreams  uint32
	goneAway        bool
	connectProtocol bool
	settingsSeen    chan struct{}
	gotSettings     bool

	keepalive  *time.Timer
	pingOut    atomic.Bool
	pingSentAt atomic.Int64
}

type clientStream struct {
	respReady chan struct{}
	resp      stack.Response
	respDone  bool // c.mu
	haveResp  bool // c.mu: final response headers read
	stop      func() bool
}

// Serve sends req upstream and returns the response once its headers
// arrived; the response body streams after. Errors before the request
// was written are stack.NotSent.
func (c *Client) Serve(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	if err := ctx.Err(); err != nil {
		closeBody(req.Body)
		return nil, stack.NotSent(err)
	}
	for tries := 0; ; tries++ {
		cc, err := c.getConn(ctx)
		if err != nil {
			closeBody(req.Body)
			return nil, err
		}
		if req.Protocol != "" {
			if err := cc.awaitConnectProtocol(ctx); err != nil {
				cc.unreserve()
				closeBody(req.Body)
				return nil, err
			}
		}
		st := cc.newStream(0)
		st.client = &clientStream{respReady: make(chan struct{})}
		if req.GotConn != nil && tries == 0 {
			req.GotConn()
		}
		st.client.stop = context.AfterFunc(ctx, func() { cc.resetStream(st, http2.ErrCodeCancel, ctx.Err()) })
		copyLater := cc.sendMessage(st, requestBlock(req), req.Body)
		if copyLater {
			go cc.copyBody(st, req.Body)
		}
		<-st.client.respReady
		cc.mu.Lock()
		err = st.err
		cc.mu.Unlock()
		if err == nil {
			return &st.client.resp, nil
		}
		// Refused, or past a GOAWAY: the upstream never saw it, another
		// connection may take it (when there is no body that went with it).
		if stack.IsNotSent(err) && (req.Body == nil || req.Body == stack.NoBody) && tries < 3 && ctx.Err() == nil {
			continue
		}
		return nil, err
	}
}

func requestBlock(req *stack.Request) headerBlock {
	hb := headerBlock{method: req.Method, scheme: req.Scheme, authority: req.Authority, path: req.Path, protocol: req.Protocol, header: req.Header}
	if hb.scheme == "" {
		hb.scheme = "http"
	}
	if hb.path == "" && hb.method != "CONNECT" {
		hb.path = "/"
	}
	return hb
}

// getConn returns a connection with a stream slot reserved for the caller.
func (c *Client) getConn(ctx context.Context) (*clientConn, error) {
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return nil, stack.NotSent(errClientClosed)
		}
		for _, cc := range c.conns {
			if cc.reserve() {
				c.mu.Unlock()
				return cc, nil
			}
		}
		if d := c.dialing; d != nil {
			c.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				return nil, stack.NotSent(ctx.Err())
			}
			if d.err != nil && !errors.Is(d.err, context.Canceled) && !errors.Is(d.err, context.DeadlineExceeded) {
				return nil, stack.NotSent(d.err)
			}
			// Dialled, or the dialling caller gave up (its own ctx): try
			// again with ours.
			c.mu.Lock()
			continue
		}
		d := &dialCall{done: make(chan struct{})}
		c.dialing = d
		c.mu.Unlock()
		nc, err := c.dial(ctx)
		c.mu.Lock()
		c.dialing = nil
		if err != nil {
			d.err = fmt.Errorf("h2: dialing upstream: %w", err)
			close(d.done)
			c.mu.Unlock()
			return nil, stack.NotSent(d.err)
		}
		cc := c.newConn(nc)
		if c.closed {
			cc.closeNow(errClientClosed)
		} else {
			c.conns = append(c.conns, cc)
		}
		close(d.done)
	}
}

func (c *Client) newConn(nc net.Conn) *clientConn {
	cc := &clientConn{pool: c, nextID: 1, peerMaxStreams: 100, settingsSeen: make(chan struct{})}
	cc.conn.init(nc, c.cfg, c.log, false)
	cc.side = cc
	cc.q.push(item{kind: itemRaw, data: []byte(http2.ClientPreface)})
	cc.q.push(cc.ourSettings()...)
	cc.lastRead.Store(time.Now().UnixNano())
	cc.keepalive = time.AfterFunc(c.cfg.KeepaliveInterval, cc.keepaliveCheck)
	go cc.w.run()
	go cc.run()
	return cc
}

// run is the connection's reader goroutine.
func (cc *clientConn) run() {
	cc.readLoop()
	cc.br.release()
	select {
	case <-cc.writerDone:
	case <-time.After(goAwayGrace):
	}
	cc.closeNow(errConnLost)
	cc.keepalive.Stop()
	cc.pool.remove(cc)
}

func (c *Client) remove(cc *clientConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.conns {
		if x == cc {
			c.conns = append(c.conns[:i], c.conns[i+1:]...)
			c.conns[len(c.conns):cap(c.conns)][0] = nil
			return
		}
	}
}

func (cc *clientConn) reserve() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed || cc.goneAway || cc.inflight >= cc.peerMaxStreams {
		return false
	}
	cc.inflight++
	return true
}

func (cc *clientConn) unreserve() {
	cc.mu.Lock()
	cc.inflight--
	cc.mu.Unlock()
}

func (cc *clientConn) awaitConnectProtocol(ctx context.Context) error {
	select {
	case <-cc.settingsSeen:
	case <-cc.done:
		return stack.NotSent(errConnLost)
	case <-ctx.Done():
		return stack.NotSent(ctx.Err())
	}
	cc.mu.Lock()
	ok := cc.connectProtocol
	cc.mu.Unlock()
	if !ok {
		return stack.NotSent(errNoConnect)
	}
	return nil
}

// open gives a queued stream its id as its HEADERS go out (the writer
// calls it, so ids go out in order); false if it must not go.
func (w *writer) open(st *stream) bool {
	cc := w.c.side.(*clientConn)
	cc.mu.Lock()
	if st.reset {
		cc.mu.Unlock()
		return false
	}
	if cc.closed || cc.goneAway || cc.nextID > 1<<31-1 {
		cc.mu.Unlock()
		cc.failUnsent(st, errGoneAway)
		return false
	}
	st.id = cc.nextID
	cc.nextID += 2
	cc.streams[st.id] = st
	cc.mu.Unlock()
	return true
}

// failUnsent ends a stream that never reached the upstream.
func (c *conn) failUnsent(st *stream, err error) {
	c.mu.Lock()
	if st.reset {
		c.mu.Unlock()
		return
	}
	st.reset = true
	st.err = stack.NotSent(err)
	c.removeLocked(st)
	c.mu.Unlock()
	st.body.fail(err)
	c.side.streamGone(st)
}

func (cc *clientConn) idle(id uint32) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return id%2 == 0 || id >= cc.nextID
}

func (cc *clientConn) headers(f *http2.HeadersFrame, fields []hpack.HeaderField, tooLarge bool) error {
	st := cc.stream(f.StreamID)
	if st == nil {
		if cc.idle(f.StreamID) {
			return connError{http2.ErrCodeProtocol, "HEADERS on idle stream"}
		}
		return nil // a stream we reset
	}
	if tooLarge {
		return cc.streamError(st.id, http2.ErrCodeProtocol)
	}
	if st.gotHeaders {
		if !f.StreamEnded() {
			return cc.streamError(st.id, http2.ErrCodeProtocol)
		}
		tr, err := parseTrailers(fields)
		if err != nil {
			return cc.streamError(st.id, http2.ErrCodeProtocol)
		}
		st.body.end(tr)
		cc.schedule(st, notifyData)
		cc.noteRemoteDone(st)
		return nil
	}
	resp := &st.client.resp
	*resp = stack.Response{Header: make(stack.Header, 0, len(fields))}
	cl, err := parseResponse(fields, resp)
	if err != nil {
		return cc.streamError(st.id, http2.ErrCodeProtocol)
	}
	if resp.Status == 101 {
		return cc.streamError(st.id, http2.ErrCodeProtocol) // no 101 in HTTP/2 (RFC 9113 §8.6)
	}
	if resp.Status < 200 {
		if f.StreamEnded() {
			return cc.streamError(st.id, http2.ErrCodeProtocol)
		}
		return nil // interim answer: the final one follows
	}
	st.gotHeaders = true
	st.contentLength = cl
	cc.mu.Lock()
	st.client.haveResp = true
	cc.mu.Unlock()
	resp.Body = &st.body
	if f.StreamEnded() {
		resp.Body = stack.NoBody
		st.body.end(nil)
		cc.noteRemoteDone(st)
	}
	cc.schedule(st, notifyDispatch)
	return nil
}

// dispatch hands the response to the waiting Serve.
func (cc *clientConn) dispatch(st *stream) {
	cc.mu.Lock()
	done := st.client.respDone
	st.client.respDone = true
	cc.mu.Unlock()
	if !done {
		close(st.client.respReady)
	}
}

func (cc *clientConn) streamGone(st *stream) {
	cs := st.client
	cc.mu.Lock()
	cc.inflight--
	wake := !cs.respDone
	cs.respDone = true
	if wake && st.err == nil && !cs.haveResp {
		st.err = errConnLost
	}
	if wake && st.err != nil && (!st.sent.Load() || isRefused(st.err)) && !stack.IsNotSent(st.err) {
		st.err = stack.NotSent(st.err)
	}
	closeConn := cc.goneAway && cc.inflight == 0
	cc.mu.Unlock()
	if cs.stop != nil {
		cs.stop()
	}
	if wake {
		close(cs.respReady)
	}
	if closeConn {
		cc.q.push(item{kind: itemFlushClose})
	}
}

func (cc *clientConn) peerGoAway(f *http2.GoAwayFrame) {
	cc.mu.Lock()
	cc.goneAway = true
	var unsent []*stream
	for id, st := range cc.streams {
		if id > f.LastStreamID {
			unsent = append(unsent, st)
		}
	}
	idle := cc.inflight == 0
	cc.mu.Unlock()
	for _, st := range unsent {
		cc.mu.Lock()
		st.sent.Store(false) // not processed: as safe to retry as never sent
		cc.mu.Unlock()
		cc.peerReset(st, http2.ErrCodeRefusedStream)
	}
	if idle {
		cc.q.push(item{kind: itemFlushClose})
	}
}

func (cc *clientConn) peerSettings(f *http2.SettingsFrame) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
		cc.peerMaxStreams = v
	}
	if v, ok := f.Value(http2.SettingEnableConnectProtocol); ok {
		cc.connectProtocol = v == 1
	}
	if !cc.gotSettings {
		cc.gotSettings = true
		close(cc.settingsSeen)
	}
}

func (cc *clientConn) pingAck(data [8]byte) {
	if data == keepalivePayload {
		cc.pingOut.Store(false)
	}
}

// keepaliveCheck PINGs a connection nothing was read from for
// KeepaliveInterval and closes it when the answer is late.
func (cc *clientConn) keepaliveCheck() {
	select {
	case <-cc.done:
		return
	default:
	}
	now := time.Now()
	if cc.pingOut.Load() {
		if now.Sub(time.Unix(0, cc.pingSentAt.Load())) >= cc.cfg.KeepaliveTimeout {
			cc.log.Debug("h2: upstream keepalive timed out", "peer", cc.nc.RemoteAddr())
			cc.closeNow(errKeepalive)
			return
		}
		cc.keepalive.Reset(cc.cfg.KeepaliveTimeout)
		return
	}
	idle := now.Sub(time.Unix(0, cc.lastRead.Load()))
	if idle < cc.cfg.KeepaliveInterval {
		cc.keepalive.Reset(cc.cfg.KeepaliveInterval - idle)
		return
	}
	cc.pingSentAt.Store(now.UnixNano())
	cc.pingOut.Store(true)
	cc.q.push(item{kind: itemPing, ping: keepalivePayload})
	cc.keepalive.Reset(cc.cfg.KeepaliveTimeout)
}

// CloseIdle closes the connections with no stream in flight; it reports
// whether none are left.
func (c *Client) CloseIdle() (empty bool) {
	c.mu.Lock()
	var idle []*clientConn
	for _, cc := range c.conns {
		cc.mu.Lock()
		if cc.inflight == 0 {
			cc.goneAway = true // takes no more streams
			idle = append(idle, cc)
		}
		cc.mu.Unlock()
	}
	c.mu.Unlock()
	for _, cc := range idle {
		cc.closeNow(errConnClosing)
		c.remove(cc)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns) == 0 && c.dialing == nil
}

// Close closes every connection; requests in flight fail.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	conns := append([]*clientConn(nil), c.conns...)
	c.conns = nil
	c.mu.Unlock()
	for _, cc := range conns {
		cc.closeNow(errClientClosed)
	}
}

func isRefused(err error) bool {
	var se http2.StreamError
	return errors.As(err, &se) && se.Code == http2.ErrCodeRefusedStream
}

// closeBody closes a request body that will not be sent (Serve owns it).
func closeBody(b stack.Body) {
	if b != nil {
		b.Close()
	}
}
