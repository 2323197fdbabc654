package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// serverConn is one client connection of a Server. Its goroutine (the
// caller of ServeConn) reads each request head, runs the Handler and
// writes the response; the request body is read by whoever the Handler
// hands it to.
type serverConn struct {
	srv    *Server
	conn   net.Conn
	ci     *stack.ConnInfo
	br     *bufio.Reader
	ctx    context.Context // ends with the connection: every request's context
	cancel context.CancelFunc
	idle   bool // guarded by srv.mu
	// drain, once set (DrainConn), ends the connection after the response
	// being written, or at once when it is idle.
	drain atomic.Bool
	head  []byte // reused head buffer

	// Per request, guarded by mu.
	mu           sync.Mutex
	respStarted  bool          // no 100 Continue any more
	continueSent bool          // 100 Continue written
	bodyDone     bool          // the request body ended: br is the conn's again
	bodyErr      error         // why the request body failed
	bgArmed      bool          // the background read starts when bgTimer fires
	bgRunning    bool          // a background read watches for the client leaving
	bgOver       bool          // the response is written: no background read now
	bgStart      chan struct{} // nil until the first background read
	bgAborting   atomic.Bool
	bgDone       chan struct{}
	bgTimer      *time.Timer // starts the background read of a slow request
	bodyUnread   bool        // the last response went out before its request body was read
}

func (c *serverConn) serve() {
	cfg := &c.srv.cfg
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		if !c.srv.setActive(c) {
			return
		}
		if !headBuffered(c.br) {
			_ = c.conn.SetReadDeadline(time.Now().Add(cfg.ReadHeaderTimeout))
		}
		head, err := readHead(c.br, c.head, cfg.MaxHeaderBytes, cfg.MaxRequestLineBytes)
		if cap(head) <= 8<<10 {
			c.head = head[:0]
		}
		if err != nil {
			c.refuse(err)
			return
		}
		m, fr, err := parseRequest(head)
		if err == nil && fr.chunked {
			err = checkBufferedChunk(c.br)
		}
		if err != nil {
			c.refuse(err)
			return
		}
		if fr.hasBody() || fr.upgrade || fr.connect {
			// The body's reads set their own deadlines, a tunnel clears
			// them; this only stops the idle or header deadline from
			// cutting a read that does not. A request without a body
			// reads nothing more until the background read, which
			// clears the deadline itself.
			_ = c.conn.SetReadDeadline(time.Time{})
		}
		if !c.serveRequest(m, fr) {
			if c.bodyUnread {
				c.lingerBeforeClose()
			}
			return
		}
		if !c.srv.setIdle(c) {
			return
		}
	}
}

// headBuffered reports whether br holds a whole request head, so that
// reading it will not touch the connection and needs no header deadline:
// the usual case, a request that came in one segment. Leading empty lines
// (which readHead skips) do not count as a head.
func headBuffered(br *bufio.Reader) bool {
	buf, _ := br.Peek(br.Buffered())
	return len(buf) > 0 && buf[0] != '\r' && buf[0] != '\n' && bytes.Contains(buf, crlfcrlf)
}

var crlfcrlf = []byte("\r\n\r\n")

// refuse answers a request the engine will not take (malformed, too
// large) and ends the connection; a client that left or stalled gets
// nothing.
func (c *serverConn) refuse(err error) {
	pe := asProtoError(err)
	if pe == nil {
		return
	}
	c.srv.log.Debug("HTTP/1 request refused", "client", c.ci.Client, "status", pe.status, "err", err)
	b := appendStatusLine(make([]byte, 0, 128), pe.status)
	b = append(b, "Content-Length: 0\r\nConnection: close\r\n\r\n"...)
	_ = c.write(b)
}

func (c *serverConn) write(b []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.srv.cfg.BodyTimeout))
	_, err := c.conn.Write(b)
	return err
}

// serveRequest runs the Handler for one request and writes its response.
// It reports whether the connection may carry another request.
func (c *serverConn) serveRequest(m *requestAlloc, fr framing) bool {
	ctx, req := c.ctx, &m.req
	req.Conn = c.ci
	c.mu.Lock()
	c.respStarted, c.continueSent, c.bodyDone, c.bodyErr, c.bgOver = false, false, false, nil, false
	c.mu.Unlock()
	var tb *tunnelBody
	switch {
	case fr.upgrade || fr.connect:
		tb = newTunnelBody(ctx)
		req.Body = tb
	case fr.hasBody():
		req.Body = c.newRequestBody(&m.body, fr)
	default:
		c.mu.Lock()
		c.bodyDone = true
		c.mu.Unlock()
		c.startBackgroundRead()
	}
	resp, err := c.srv.handler.Serve(ctx, req)
	if err == nil && resp == nil {
		err = errors.New("handler returned no response")
	}
	if err != nil {
		c.srv.log.Debug("HTTP/1 handler failed", "err", err)
		resp = &stack.Response{Status: 502, Body: stack.NoBody}
	}
	if resp.Body == nil {
		resp.Body = stack.NoBody
	}
	c.mu.Lock()
	c.respStarted = true
	bodyErr, bodyDone := c.bodyErr, c.bodyDone
	c.mu.Unlock()
	if pe := asProtoError(bodyErr); pe != nil {
		_ = resp.Body.Close()
		resp = &stack.Response{Status: pe.status, Body: stack.NoBody}
		fr.keepAlive = false
	}
	if !bodyDone {
		// An answer before the end of the request's body (an early error,
		// a refused 100-continue): what is left of the body would be read
		// as the next request, so the connection ends after this answer,
		// and the answer says so (RFC 9112, 9.3 and 9.6). Without it, a
		// client keeps the connection for its next request, which then
		// meets the close: a 502 for a POST, which it may not retry.
		fr.keepAlive = false
	}
	if tb != nil {
		if bodyErr == nil && (fr.upgrade && resp.Status == 101 || fr.connect && resp.Status/100 == 2) {
			req.Info.Upgraded = true
			c.tunnel(ctx, fr, resp, tb)
			return false
		}
		tb.decide(nil, nil)
		fr.keepAlive = false
	}
	if resp.Status < 200 || resp.Status > 999 {
		// Interim answers are the engines' business; a 101 to a request
		// that asked for no upgrade cannot be honoured.
		c.srv.log.Debug("HTTP/1 handler answered a status it cannot have", "status", resp.Status)
		_ = resp.Body.Close()
		resp = &stack.Response{Status: 502, Body: stack.NoBody}
	}
	keep := c.writeResponse(req.Method, fr, resp)
	c.abortBackgroundRead()
	c.mu.Lock()
	done := c.bodyDone
	c.mu.Unlock()
	c.bodyUnread = !done && ctx.Err() == nil
	return keep && done && ctx.Err() == nil
}

// asProtoError returns err's protoError, or nil.
func asProtoError(err error) *protoError {
	if err == nil {
		return nil
	}
	var pe *protoError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// lingerAfterUnreadBody is how long a connection that ends with the
// request body unread (the answer came first: a refused 100-continue, an
// early error) keeps reading and dropping what the client still sends,
// its write side closed. Closing at once with bytes unread would reset
// the connection, and the client could lose the answer before reading it
// (net/http's server waits 500 ms too).
const lingerAfterUnreadBody = 500 * time.Millisecond

// lingerBeforeClose half-closes the connection and drains it until the
// client closes its side or lingerAfterUnreadBody passes.
func (c *serverConn) lingerBeforeClose() {
	cw, ok := c.conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(lingerAfterUnreadBody))
	_, _ = io.Copy(io.Discard, c.br)
}

func (c *serverConn) newRequestBody(b *bodyReader, fr framing) *bodyReader {
	*b = bodyReader{br: c.br, conn: c.conn, timeout: c.srv.cfg.BodyTimeout, maxTrailer: c.srv.cfg.MaxHeaderBytes}
	if fr.chunked {
		b.mode = modeChunked
	} else {
		b.mode, b.left = modeLength, fr.contentLength
	}
	b.expect100, b.owner = fr.expect100, c
	return b
}

func (c *serverConn) bodyAbandoned() {}

// bodyFirstRead answers 100 Continue when the Handler first reads a body
// the client waits to send, unless the response has started.
func (c *serverConn) bodyFirstRead() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.respStarted || c.continueSent {
		return
	}
	c.continueSent = true
	_ = c.write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
}

// bodyEnded runs on the goroutine that read the request body to its end:
// the connection is free to watch for the client leaving. A body cut short
// or malformed cancels the request.
func (c *serverConn) bodyEnded(err error) {
	if err == io.EOF {
		c.mu.Lock()
		c.bodyDone = true
		c.mu.Unlock()
		c.startBackgroundRead()
		return
	}
	c.mu.Lock()
	c.bodyErr = err
	c.mu.Unlock()
	c.cancel()
}

// backgroundReadDelay is how long the Handler works on a request before
// the connection is watched for the client leaving: most requests are
// answered sooner, and watching costs each one a goroutine hand-over, a
// read and three deadline changes. A client that leaves is noticed at most
// this much later.
const backgroundReadDelay = 10 * time.Millisecond

// startBackgroundRead arranges for the idle connection to be watched while
// the Handler works, once it has worked for backgroundReadDelay, so that
// the request's context ends when the client leaves. Bytes of a pipelined
// next request stay buffered until the response is written.
func (c *serverConn) startBackgroundRead() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bgRunning || c.bgOver || c.bgArmed {
		return
	}
	c.bgArmed = true
	if c.bgTimer == nil {
		c.bgTimer = time.AfterFunc(backgroundReadDelay, c.backgroundReadDue)
	} else {
		c.bgTimer.Reset(backgroundReadDelay)
	}
}

// backgroundReadDue starts the background read (bgTimer's function). A
// firing left over from an earlier request finds bgArmed false, or armed
// by a request whose body has ended, which may be watched at once.
func (c *serverConn) backgroundReadDue() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.bgArmed || c.bgRunning || c.bgOver {
		return
	}
	c.bgArmed = false
	c.bgRunning = true
	_ = c.conn.SetReadDeadline(time.Time{})
	if c.bgStart == nil {
		c.bgStart = make(chan struct{})
		go c.backgroundReads()
	}
	c.bgStart <- struct{}{}
}

// backgroundReads runs the connection's background reads, one per
// request, until the connection ends.
func (c *serverConn) backgroundReads() {
	for range c.bgStart {
		_, err := c.br.Peek(1)
		if err != nil && !c.bgAborting.Load() {
			c.cancel()
		}
		c.bgDone <- struct{}{}
	}
}

// stopBackgroundReads ends the background reader when the connection ends.
func (c *serverConn) stopBackgroundReads() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bgOver = true
	c.bgArmed = false
	if c.bgTimer != nil {
		c.bgTimer.Stop()
	}
	if c.bgStart != nil {
		close(c.bgStart)
	}
}

// abortBackgroundRead stops the background read before the connection
// reads its next request.
func (c *serverConn) abortBackgroundRead() {
	c.mu.Lock()
	running := c.bgRunning
	c.bgRunning, c.bgOver = false, true
	if c.bgArmed {
		c.bgArmed = false
		c.bgTimer.Stop()
	}
	c.mu.Unlock()
	if !running {
		return
	}
	c.bgAborting.Store(true)
	_ = c.conn.SetReadDeadline(aLongTimeAgo)
	<-c.bgDone
	c.bgAborting.Store(false)
	_ = c.conn.SetReadDeadline(time.Time{})
}

var aLongTimeAgo = time.Unix(1, 0)
