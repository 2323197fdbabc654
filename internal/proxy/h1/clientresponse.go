package h1

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// readResponse reads the response head (skipping interim 1xx answers but
// 101) and sets up its body. A 101 to an upgrade, or a 2xx to CONNECT,
// turns the connection into a tunnel: the response body is the upstream's
// raw bytes and req.Body is copied up.
func (cc *clientConn) readResponse(req *stack.Request, tunnel bool, handedOff *bool) (*stack.Response, error) {
	cfg := &cc.client.cfg
	for {
		head, err := readHead(cc.br, cc.head, cfg.MaxHeaderBytes, cfg.MaxHeaderBytes)
		if cap(head) <= 8<<10 {
			cc.head = head[:0]
		}
		if err != nil {
			if len(head) == 0 && isConnGone(err) {
				return nil, fmt.Errorf("reading response: %w (%w)", errNoAnswer, err)
			}
			return nil, fmt.Errorf("reading response head: %w", err)
		}
		status, minor, ok := parseStatusLine(head)
		if !ok {
			return nil, fmt.Errorf("malformed response status line %q", head[:min(len(head), 64)])
		}
		if status < 200 && status != 101 {
			continue
		}
		firstEnd := indexCRLF(head)
		count, err := checkFields(head, firstEnd+2)
		if err != nil {
			return nil, fmt.Errorf("response head: %w", err)
		}
		m := &responseAlloc{}
		f, err := parseFields(string(head), firstEnd+2, count, m.fields[:0])
		if err != nil {
			return nil, fmt.Errorf("response head: %w", err)
		}
		return cc.responseBody(m, req, tunnel, status, minor, f, handedOff)
	}
}

func (cc *clientConn) responseBody(m *responseAlloc, req *stack.Request, tunnel bool, status, minor int, f fields, handedOff *bool) (*stack.Response, error) {
	resp := &m.resp
	*resp = stack.Response{Status: status, Header: f.header, Body: stack.NoBody}
	if f.connClose || minor == 0 {
		cc.broken.Store(true)
	}
	connect := req.Method == "CONNECT"
	if tunnel && (status == 101 && !connect || connect && status/100 == 2) {
		req.Info.Upgraded = true
		cc.broken.Store(true)
		resp.Body = &upstreamTunnel{cc: cc}
		*handedOff = true
		go cc.uploadTunnel(req.Body)
		return resp, nil
	}
	if status == 101 {
		return nil, fmt.Errorf("101 Switching Protocols to a request that did not ask to")
	}
	resp.Header.Del("upgrade")
	if tunnel {
		// Refused: nothing of the tunnel was sent.
		cc.broken.Store(true)
		cc.release()
	}
	b := &m.body
	*b = bodyReader{br: cc.br, conn: cc.conn, maxTrailer: cc.client.cfg.MaxHeaderBytes, owner: cc}
	cc.readDone.Store(false)
	switch {
	case req.Method == "HEAD" || noBodyStatus(status) || f.contentLength == 0 && !f.chunked:
		cc.release()
		return resp, nil
	case f.chunked:
		b.mode = modeChunked
	case f.contentLength > 0:
		b.mode, b.left = modeLength, f.contentLength
	default:
		b.mode = modeUntilClose
		cc.broken.Store(true)
	}
	resp.Body = b
	return resp, nil
}

// responseAlloc is a response and its body in one allocation.
type responseAlloc struct {
	resp   stack.Response
	body   bodyReader
	fields [fieldsInline]stack.Field
}

// fieldsInline is how many header fields fit in a message's own
// allocation; more take one of their own.
const fieldsInline = 8

func (cc *clientConn) bodyFirstRead() {}

// bodyEnded runs when the response body ends or fails.
func (cc *clientConn) bodyEnded(err error) {
	if err != io.EOF {
		cc.fail()
	}
	if !cc.readDone.Swap(true) {
		cc.release()
	}
}

// bodyAbandoned runs when the response body is closed before its end.
func (cc *clientConn) bodyAbandoned() {
	cc.fail()
	if !cc.readDone.Swap(true) {
		cc.release()
	}
}

// parseStatusLine reads "HTTP/1.x NNN reason".
func parseStatusLine(head []byte) (status, minor int, ok bool) {
	if len(head) < 14 || string(head[:7]) != "HTTP/1." || !isDigit(head[7]) || head[8] != ' ' ||
		!isDigit(head[9]) || !isDigit(head[10]) || !isDigit(head[11]) || head[12] != ' ' && head[12] != '\r' {
		return 0, 0, false
	}
	status = int(head[9]-'0')*100 + int(head[10]-'0')*10 + int(head[11]-'0')
	return status, int(head[7] - '0'), status >= 100
}

// upstreamTunnel is the response body of a tunnel: the upstream's bytes.
type upstreamTunnel struct {
	cc     *clientConn
	closed atomic.Bool
}

func (t *upstreamTunnel) Read(p []byte) (int, error) { return t.cc.br.Read(p) }
func (t *upstreamTunnel) Trailers() stack.Header     { return nil }

// Close ends the tunnel: the upstream connection is closed.
func (t *upstreamTunnel) Close() error {
	if !t.closed.Swap(true) {
		t.cc.fail()
		t.cc.release()
	}
	return nil
}

// uploadTunnel copies the client's side of a tunnel upstream; its end
// half-closes the upstream connection.
func (cc *clientConn) uploadTunnel(body stack.Body) {
	defer cc.release()
	defer func() { _ = body.Close() }()
	bp := getBuf()
	defer putBuf(bp)
	buf := (*bp)[:cap(*bp)]
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := cc.conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err == io.EOF {
			closeWrite(cc.conn)
			return
		}
		if err != nil {
			cc.fail()
			return
		}
	}
}
