package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// Server serves HTTP/2 connections with a stack.Handler.
type Server struct {
	h       stack.Handler
	cfg     Config
	log     *slog.Logger
	workers *workers

	mu       sync.Mutex
	conns    map[*serverConn]struct{}
	shutdown bool
}

// NewServer returns a Server that hands each request to h.
func NewServer(h stack.Handler, cfg Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{h: h, cfg: cfg.withDefaults(), log: log, workers: newWorkers(), conns: make(map[*serverConn]struct{})}
}

// serverConn is one client connection of a Server.
type serverConn struct {
	conn
	s        *Server
	ci       *stack.ConnInfo
	ctx      context.Context
	cancel   context.CancelFunc
	handlers sync.WaitGroup
	maxID    atomic.Uint32 // highest stream the client opened
	idleT    *time.Timer

	// c.mu
	draining  bool
	finalSent bool
	lastID    uint32
}

// drainPing is the payload of the PING that separates the two GOAWAYs of
// a graceful shutdown.
var drainPing = [8]byte{'s', 'k', 'n', 'd', 'r', 'a', 'i', 'n'}

// ServeConn serves one connection until it ends; the caller's goroutine
// is its reader. It returns once the connection's goroutines are gone.
func (s *Server) ServeConn(nc net.Conn, ci *stack.ConnInfo) {
	sc := &serverConn{s: s, ci: ci}
	sc.conn.init(nc, s.cfg, s.log, true)
	sc.side = sc
	sc.ctx, sc.cancel = context.WithCancel(context.Background())
	defer sc.cancel()
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[sc] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
	}()

	c := &sc.conn
	c.q.push(c.ourSettings()...)
	sc.idleT = time.AfterFunc(s.cfg.IdleTimeout, sc.idleCheck)
	defer sc.idleT.Stop()
	go c.w.run()
	if err := sc.handshake(); err != nil {
		c.log.Debug("h2: handshake failed", "peer", nc.RemoteAddr(), "err", err)
	} else {
		c.readLoop()
	}
	c.br.release()
	select {
	case <-c.writerDone:
	case <-time.After(goAwayGrace):
	}
	c.closeNow(errConnLost)
	<-c.writerDone
	sc.handlers.Wait()
}

// handshake reads the client preface and its first SETTINGS, both within
// HandshakeTimeout.
func (sc *serverConn) handshake() error {
	c := &sc.conn
	c.nc.SetReadDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, preface[:]); err != nil || !bytes.Equal(preface[:], []byte(http2.ClientPreface)) {
		c.goAway(http2.ErrCodeProtocol, "bad preface")
		return errBadPreface
	}
	fh, err := c.fr.ReadFrameHeader()
	if errors.Is(err, http2.ErrFrameTooLarge) {
		return c.readError(err) // FRAME_SIZE_ERROR, whatever the frame's type
	}
	if err != nil || fh.Type != http2.FrameSettings || fh.Flags.Has(http2.FlagSettingsAck) {
		c.goAway(http2.ErrCodeProtocol, "expected SETTINGS")
		return errBadPreface
	}
	f, err := c.fr.ReadFrameForHeader(fh)
	if err == nil {
		err = c.handleFrame(f)
	}
	if err != nil {
		return c.readError(err)
	}
	c.nc.SetReadDeadline(time.Time{})
	return nil
}

type protoError string

func (e protoError) Error() string { return string(e) }

const errBadPreface = protoError("h2: bad client preface")

func (sc *serverConn) lastStream() uint32 {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.finalSent {
		return sc.lastID
	}
	return sc.maxID.Load()
}

func (sc *serverConn) idle(id uint32) bool { return id%2 == 0 || id > sc.maxID.Load() }

func (sc *serverConn) headers(f *http2.HeadersFrame, fields []hpack.HeaderField, tooLarge bool) error {
	c := &sc.conn
	id := f.StreamID
	if id%2 == 0 {
		return connError{http2.ErrCodeProtocol, "even stream id from client"}
	}
	if st := c.stream(id); st != nil {
		return sc.trailers(st, f, fields, tooLarge)
	}
	if id <= sc.maxID.Load() {
		return connError{http2.ErrCodeStreamClosed, "HEADERS on closed stream"}
	}
	sc.maxID.Store(id)
	if f.HasPriority() && f.Priority.StreamDep == id {
		return c.streamError(id, http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	refuse := sc.finalSent && id > sc.lastID
	full := uint32(len(c.streams)) >= c.cfg.MaxConcurrentStreams
	c.mu.Unlock()
	if refuse {
		return nil // past our last GOAWAY: ignored, the client retries
	}
	if full {
		if !c.resets.Allow() {
			return connError{http2.ErrCodeEnhanceYourCalm, "too many refused streams"}
		}
		return c.streamError(id, http2.ErrCodeRefusedStream)
	}
	st := c.newStream(id)
	st.gotHeaders = true
	if tooLarge {
		return sc.refuseTooLarge(st, f.StreamEnded())
	}
	req := &stack.Request{ProtoMajor: 2, Conn: sc.ci, Body: &st.body, Header: make(stack.Header, 0, len(fields))}
	cl, err := parseRequest(fields, true, req)
	if err == nil && f.StreamEnded() && cl > 0 {
		err = errMalformed
	}
	if err != nil {
		return c.streamError(id, http2.ErrCodeProtocol)
	}
	st.contentLength = cl
	st.req = req
	st.ctx, st.cancel = context.WithCancel(sc.ctx)
	c.mu.Lock()
	c.streams[id] = st
	c.mu.Unlock()
	if f.StreamEnded() {
		req.Body = stack.NoBody
		st.body.end(nil)
		c.noteRemoteDone(st)
	}
	st.undispatched = true
	c.schedule(st, notifyDispatch)
	return nil
}

// refuseTooLarge answers a request whose header list is over
// MaxHeaderListSize with 431, as a stream error.
func (sc *serverConn) refuseTooLarge(st *stream, ended bool) error {
	c := &sc.conn
	st.ctx, st.cancel = context.WithCancel(sc.ctx)
	st.discard.Store(true)
	c.mu.Lock()
	c.streams[st.id] = st
	c.mu.Unlock()
	c.q.push(item{kind: itemHeaders, st: st, hdr: headerBlock{status: 431}, end: true})
	if ended {
		c.noteRemoteDone(st)
	} else {
		c.resetStream(st, http2.ErrCodeNo, errMalformed)
	}
	return nil
}

func (sc *serverConn) trailers(st *stream, f *http2.HeadersFrame, fields []hpack.HeaderField, tooLarge bool) error {
	c := &sc.conn
	if st.remoteDoneSeen() {
		return c.streamError(st.id, http2.ErrCodeStreamClosed)
	}
	if !f.StreamEnded() || tooLarge {
		return c.streamError(st.id, http2.ErrCodeProtocol)
	}
	tr, err := parseTrailers(fields)
	if err != nil || st.contentLength >= 0 && st.received != st.contentLength {
		return c.streamError(st.id, http2.ErrCodeProtocol)
	}
	st.body.end(tr)
	c.schedule(st, notifyData)
	c.noteRemoteDone(st)
	return nil
}

// dispatch starts the handler of a new stream, unless it was reset while
// the frames read with it were processed.
func (sc *serverConn) dispatch(st *stream) {
	sc.mu.Lock()
	reset := st.reset || sc.closed
	sc.mu.Unlock()
	if reset {
		return
	}
	sc.handlers.Add(1)
	sc.s.workers.start(streamJob{sc, st})
}

// serve runs the handler of one stream and queues its response.
func (sc *serverConn) serve(st *stream) {
	defer sc.handlers.Done()
	req := st.req
	resp, err := sc.callHandler(st, req)
	if code, ok := resetCode(err); ok {
		// The upstream reset its stream: pass the reset on.
		sc.resetStream(st, code, err)
		return
	}
	if err != nil || resp == nil || resp.Status < 200 || resp.Status > 999 {
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err == nil {
			err = errBadResponse
		}
		if st.ctx.Err() == nil {
			sc.log.Debug("h2: handler failed", "err", err)
		}
		resp = errorResponse(req)
	}
	if st.ctx.Err() != nil {
		resp.Body.Close()
		return
	}
	if sc.sendMessage(st, headerBlock{status: resp.Status, header: resp.Header}, resp.Body) {
		sc.copyBody(st, resp.Body)
	}
}

const errBadResponse = protoError("h2: handler gave no usable response")

func (sc *serverConn) callHandler(st *stream, req *stack.Request) (resp *stack.Response, err error) {
	defer func() {
		if p := recover(); p != nil {
			sc.log.Error("h2: handler panicked", "panic", p)
			resp, err = nil, protoError("h2: handler panicked")
		}
	}()
	return sc.s.h.Serve(st.ctx, req)
}

// errorResponse is the bare answer to a Handler error: 502, or gRPC
// UNAVAILABLE as a trailers-only response. (A Handler error that wraps an
// http2.StreamError, as the Client's does when the upstream reset the
// stream, is passed on as RST_STREAM with its code instead.)
func errorResponse(req *stack.Request) *stack.Response {
	if req.IsGRPC() {
		return &stack.Response{Status: 200, Body: stack.NoBody, Header: stack.Header{
			{Name: "content-type", Value: "application/grpc"},
			{Name: "grpc-status", Value: "14"},
			{Name: "grpc-message", Value: "upstream unavailable"},
		}}
	}
	return &stack.Response{Status: 502, Body: stack.NoBody}
}

func (sc *serverConn) streamGone(st *stream) {
	if st.cancel != nil {
		st.cancel()
	}
	sc.mu.Lock()
	empty := len(sc.streams) == 0
	closeNow := empty && sc.finalSent
	sc.mu.Unlock()
	if closeNow {
		sc.q.push(item{kind: itemFlushClose})
	} else if empty {
		sc.idleT.Reset(sc.cfg.IdleTimeout)
	}
}

func (sc *serverConn) idleCheck() {
	if sc.activeStreams() == 0 {
		sc.goAway(http2.ErrCodeNo, "idle")
	}
}

func (sc *serverConn) peerGoAway(*http2.GoAwayFrame) {}

func (sc *serverConn) peerSettings(*http2.SettingsFrame) {}

// startDrain sends the first GOAWAY of a graceful shutdown (the largest
// stream id: "stop opening streams") and a PING; the answer to the PING
// proves the client saw the GOAWAY, so the second GOAWAY can name the
// last stream really opened.
func (sc *serverConn) startDrain() {
	sc.mu.Lock()
	if sc.draining || sc.closed {
		sc.mu.Unlock()
		return
	}
	sc.draining = true
	sc.mu.Unlock()
	sc.q.push(item{kind: itemGoAway, id: 1<<31 - 1, code: http2.ErrCodeNo},
		item{kind: itemPing, ping: drainPing})
}

func (sc *serverConn) pingAck(data [8]byte) {
	if data != drainPing {
		return
	}
	sc.mu.Lock()
	if sc.finalSent {
		sc.mu.Unlock()
		return
	}
	sc.finalSent = true
	sc.lastID = sc.maxID.Load()
	empty := len(sc.streams) == 0
	sc.mu.Unlock()
	sc.q.push(item{kind: itemGoAway, id: sc.lastID, code: http2.ErrCodeNo})
	if empty {
		sc.q.push(item{kind: itemFlushClose})
	}
}

// DrainConn stops taking requests on the connections served with ci (the
// inbound policy no longer allows their client): a graceful GOAWAY, as
// Shutdown sends; the streams in flight finish, then the connection
// closes.
func (s *Server) DrainConn(ci *stack.ConnInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sc := range s.conns {
		if sc.ci == ci {
			sc.startDrain()
		}
	}
}

// Shutdown stops taking requests (GOAWAY on every connection), waits for
// the streams in flight until ctx ends, then closes every connection,
// which cancels the requests left. It returns ctx.Err() if it had to cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.workers.stop()
	s.mu.Lock()
	s.shutdown = true
	for sc := range s.conns {
		sc.startDrain()
	}
	s.mu.Unlock()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			s.mu.Lock()
			for sc := range s.conns {
				sc.closeNow(errConnClosing)
			}
			s.mu.Unlock()
			return ctx.Err()
		}
	}
}

// resetCode returns the code of the stream reset err wraps, if any.
func resetCode(err error) (http2.ErrCode, bool) {
	if err == nil {
		return 0, false
	}
	var se http2.StreamError
	if errors.As(err, &se) {
		return se.Code, true
	}
	return 0, false
}
