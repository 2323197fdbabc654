package h1

import (
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// writeResponse writes resp to the client and reports whether the
// connection may carry another request. A body known complete and small
// goes with Content-Length in the same write as the head; a body of
// unknown length is chunked (trailers included), its head held back until
// the first data unless it is an event stream; HTTP/1.0 clients get it
// delimited by the connection's close.
func (c *serverConn) writeResponse(method string, fr framing, resp *stack.Response) bool {
	defer func() { _ = resp.Body.Close() }()
	bp := getBuf()
	defer putBuf(bp)
	b := appendStatusLine((*bp)[:0], resp.Status)
	b = appendFields(b, resp.Header, false)
	keep := fr.keepAlive && !c.srv.draining.Load() && !c.drain.Load()
	if !keep {
		b = append(b, "Connection: close\r\n"...)
	}
	cl := int64(-1)
	if v := resp.Header.Get("content-length"); v != "" {
		if n, ok := parseContentLength(v); ok {
			cl = n
		}
	}
	if method == "HEAD" || noBodyStatus(resp.Status) {
		if cl >= 0 && method == "HEAD" {
			b = appendContentLength(b, cl)
		}
		b = append(b, '\r', '\n')
		return c.write(b) == nil && keep
	}
	small := -1
	if cl >= 0 && cl <= smallBody {
		small = int(cl)
	} else if bl, ok := resp.Body.(bodyLen); ok && cl < 0 && bl.Len() <= smallBody {
		small = bl.Len()
	}
	if small >= 0 {
		ok := c.writeSmall(b, fr, resp, cl >= 0, small)
		return ok && keep
	}
	switch {
	case cl >= 0:
		b = appendContentLength(b, cl)
		b = append(b, '\r', '\n')
		_, err := copyRaw(c, b, resp.Body, cl)
		c.logCut(err)
		return err == nil && keep
	case fr.minor == 0:
		b = append(b, '\r', '\n')
		_, err := copyRaw(c, b, resp.Body, -1)
		c.logCut(err)
		return false
	}
	b = append(b, "Transfer-Encoding: chunked\r\n\r\n"...)
	if strings.HasPrefix(resp.Header.Get("content-type"), "text/event-stream") {
		if c.write(b) != nil {
			return false
		}
		b = b[:0]
	}
	_, err := copyChunked(c, b, resp.Body)
	c.logCut(err)
	return err == nil && keep
}

func appendContentLength(b []byte, n int64) []byte {
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, '\r', '\n')
}

// writeSmall reads a body of n bytes (exact says n is a Content-Length the
// body must match) and writes it in one write with the head: with
// Content-Length, or as one chunk and trailers when it has trailers and the
// length was not fixed.
func (c *serverConn) writeSmall(b []byte, fr framing, resp *stack.Response, exact bool, n int) bool {
	dp := getBuf()
	defer putBuf(dp)
	data, err := readAtMost(resp.Body, (*dp)[:0], n)
	*dp = data[:0]
	if err != nil || exact && len(data) != n {
		// Nothing is written yet: the client gets a bare 502.
		c.srv.log.Debug("HTTP/1 response body failed", "err", err, "read", len(data))
		b = appendStatusLine(b[:0], 502)
		b = append(b, "Content-Length: 0\r\nConnection: close\r\n\r\n"...)
		_ = c.write(b)
		return false
	}
	trailers := resp.Body.Trailers()
	if !exact && len(trailers) > 0 && fr.minor == 1 {
		b = append(b, "Transfer-Encoding: chunked\r\n\r\n"...)
		if len(data) > 0 {
			b = strconv.AppendInt(b, int64(len(data)), 16)
			b = append(b, '\r', '\n')
			b = append(b, data...)
			b = append(b, '\r', '\n')
		}
		b = appendLastChunk(b, trailers)
	} else {
		b = appendContentLength(b, int64(len(data)))
		b = append(b, '\r', '\n')
		b = append(b, data...)
	}
	return c.write(b) == nil
}

var errBodyTooLong = errors.New("body longer than announced")

// readAtMost reads body to its end into buf; more than n bytes is an error.
func readAtMost(body stack.Body, buf []byte, n int) ([]byte, error) {
	if cap(buf) < n+1 {
		buf = make([]byte, 0, n+1)
	}
	for {
		m, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if len(buf) > n {
			return buf, errBodyTooLong
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func (c *serverConn) logCut(err error) {
	if err != nil {
		c.srv.log.Debug("HTTP/1 response body cut", "client", c.ci.Client, "err", err)
	}
}
