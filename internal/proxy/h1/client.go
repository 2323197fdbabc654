package h1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"syscall"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// Serve sends req upstream and returns the response, whose body the caller
// reads to the end or closes. Errors before any byte of the request was
// written are stack.NotSent. A request without a body that meets a reused
// connection the upstream had closed is sent once more on a new
// connection: when writing it failed, or, for an idempotent method, when
// the connection ended before any byte of the response.
func (c *Client) Serve(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	if req.Body == nil {
		req.Body = stack.NoBody
	}
	for attempt := 0; ; attempt++ {
		cc, err := c.get(ctx)
		if err != nil {
			return nil, err
		}
		if attempt == 0 && req.GotConn != nil {
			req.GotConn()
		}
		handedOff := false
		resp, err := cc.roundTrip(ctx, req, &handedOff)
		if err != nil && attempt == 0 && isStale(err) {
			c.log.Debug("HTTP/1 upstream closed an idle connection; sending again", "err", err)
			continue
		}
		if err != nil && !handedOff {
			// Serve owns req.Body: abandon what was not sent.
			_ = req.Body.Close()
		}
		return resp, err
	}
}

// staleConnError is a reused connection found closed before the upstream
// answered anything to a request whose body was not read.
type staleConnError struct{ err error }

func (e *staleConnError) Error() string { return e.err.Error() }
func (e *staleConnError) Unwrap() error { return e.err }

func isStale(err error) bool {
	var stale *staleConnError
	return errors.As(err, &stale)
}

// roundTrip sends req on cc and reads the response head. handedOff is set
// once a goroutine owns req.Body (writing it upstream).
func (cc *clientConn) roundTrip(ctx context.Context, req *stack.Request, handedOff *bool) (*stack.Response, error) {
	if err := ctx.Err(); err != nil {
		cc.client.put(cc)
		return nil, stack.NotSent(err)
	}
	tunnel := req.IsUpgrade() || req.Method == "CONNECT"
	if !isToken(req.Method) || !tunnel && !validTarget(req.Path) || !validTarget(req.Authority) && req.Authority != "" {
		cc.client.put(cc)
		return nil, stack.NotSent(fmt.Errorf("request %s %q to %q cannot be written in HTTP/1", req.Method, req.Path, req.Authority))
	}
	cc.broken.Store(false)
	cc.pending.Store(2)
	cc.stopCancel = context.AfterFunc(ctx, cc.failFn)
	bp := getBuf()
	defer putBuf(bp)
	b := cc.appendHead((*bp)[:0], req, tunnel)

	// The body: none, small and complete in the same write, or streamed.
	bodyTouched := false
	streamLen := int64(-2) // -2: nothing to stream; -1: chunked; else Content-Length
	cl := int64(-1)
	if v := req.Header.Get("content-length"); v != "" {
		cl, _ = parseContentLength(v)
	}
	small := -1
	if bl, ok := req.Body.(bodyLen); ok && bl.Len() <= smallBody && cl < 0 {
		small = bl.Len()
	} else if cl >= 0 && cl <= smallBody {
		small = int(cl)
	}
	switch {
	case tunnel:
		b = append(b, '\r', '\n')
	case req.Body == stack.NoBody:
		if req.Method == "POST" || req.Method == "PUT" || req.Method == "PATCH" {
			b = append(b, "Content-Length: 0\r\n"...)
		}
		b = append(b, '\r', '\n')
	case small >= 0:
		bodyTouched = true
		var err error
		if b, err = appendSmallBody(b, req.Body, small, cl >= 0); err != nil {
			cc.stopCancel()
			cc.fail()
			cc.client.drop(cc)
			return nil, stack.NotSent(fmt.Errorf("reading request body: %w", err))
		}
	case cl >= 0:
		b = appendContentLength(b, cl)
		b = append(b, '\r', '\n')
		streamLen = cl
	default:
		b = append(b, "Transfer-Encoding: chunked\r\n\r\n"...)
		streamLen = -1
	}
	if _, err := cc.conn.Write(b); err != nil {
		cc.fail()
		cc.release()
		cc.release()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if cc.reused && !bodyTouched {
			return nil, &staleConnError{fmt.Errorf("writing request: %w", err)}
		}
		return nil, fmt.Errorf("writing request: %w", err)
	}
	if streamLen >= -1 {
		bodyTouched, *handedOff = true, true
		go cc.writeBody(req.Body, streamLen)
	} else if !tunnel {
		cc.release()
	}
	resp, err := cc.readResponse(req, tunnel, handedOff)
	if err != nil {
		cc.fail()
		if tunnel {
			cc.release()
		}
		cc.release()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if cc.reused && !bodyTouched && idempotent(req.Method) && errors.Is(err, errNoAnswer) {
			return nil, &staleConnError{err}
		}
		return nil, err
	}
	return resp, nil
}

// appendHead appends the request line and fields.
func (cc *clientConn) appendHead(b []byte, req *stack.Request, tunnel bool) []byte {
	b = append(b, req.Method...)
	b = append(b, ' ')
	switch {
	case req.Method == "CONNECT":
		b = append(b, req.Authority...)
	case req.Path == "":
		b = append(b, '/')
	default:
		b = append(b, req.Path...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, req.Authority...)
	b = append(b, '\r', '\n')
	upgrade := tunnel && req.Method != "CONNECT"
	b = appendFields(b, req.Header, upgrade)
	if upgrade {
		b = append(b, "Connection: Upgrade\r\n"...)
	}
	return b
}

// appendSmallBody reads a small body whole and appends it after the head:
// with Content-Length, or as one chunk with trailers when it has some and
// its length was not fixed.
func appendSmallBody(b []byte, body stack.Body, n int, exact bool) ([]byte, error) {
	dp := getBuf()
	defer putBuf(dp)
	data, err := readAtMost(body, (*dp)[:0], n)
	*dp = data[:0]
	if err == nil && exact && len(data) != n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return b, err
	}
	if trailers := body.Trailers(); len(trailers) > 0 && !exact {
		b = append(b, "Transfer-Encoding: chunked\r\n\r\n"...)
		if len(data) > 0 {
			b = strconv.AppendInt(b, int64(len(data)), 16)
			b = append(b, '\r', '\n')
			b = append(append(b, data...), '\r', '\n')
		}
		return appendLastChunk(b, trailers), nil
	}
	b = appendContentLength(b, int64(len(data)))
	b = append(b, '\r', '\n')
	return append(b, data...), nil
}

// writeBody streams the request body after its head: n bytes, or chunked
// when n is -1. A body that fails closes the connection so that the
// upstream sees the request abandoned.
func (cc *clientConn) writeBody(body stack.Body, n int64) {
	defer cc.release()
	bp := getBuf()
	defer putBuf(bp)
	var err error
	if n >= 0 {
		_, err = copyRaw(cc, (*bp)[:0], body, n)
	} else {
		_, err = copyChunked(cc, (*bp)[:0], body)
	}
	if err != nil {
		cc.client.log.Debug("HTTP/1 request body cut", "err", err)
		_ = body.Close()
		cc.fail()
	}
}

func (cc *clientConn) write(b []byte) error {
	_, err := cc.conn.Write(b)
	return err
}

// idempotent reports whether a request with method may be sent twice
// when the upstream may have seen it once (RFC 9110 9.2.2).
func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// errNoAnswer is a connection that ended before any byte of a response.
var errNoAnswer = errors.New("connection closed before any response")

func isConnGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
