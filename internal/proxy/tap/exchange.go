package tap

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/skeinmesh/skein/internal/proxy/proxyerror"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

// exchange is one tapped request, from its arrival to its response's end.
type exchange struct {
	tap       *Tap
	id        uint64
	start     time.Time
	direction string
	sessions  []*session // matched at arrival; narrowed once routed

	// What the client sent, copied at arrival: layers below may rewrite it.
	method, scheme, authority, path string
	header                          stack.Header

	reqBody   *capture // nil without a body prefix to capture
	respBody  *capture
	slot      bool // holds one of maxCaptures
	reqBytes  atomic.Uint64
	respBytes atomic.Uint64

	// Set once the layers below answered.
	source, dest *tappb.Peer
	status       int
	grpcHeader   string // grpc-status of a trailers-only answer
	proxyError   string // why the proxy answered itself, as it told the client
	ended        sync.Once
}

func (t *Tap) newExchange(direction string, req *stack.Request, sessions []*session) *exchange {
	x := &exchange{
		tap: t, id: t.streams.Add(1), start: t.now(), direction: direction, sessions: sessions,
		method: req.Method, scheme: req.Scheme, authority: req.Authority, path: req.Path, header: req.Header.Clone(),
	}
	bodyBytes := 0
	for _, s := range sessions {
		bodyBytes = max(bodyBytes, s.bodyBytes)
	}
	if bodyBytes > 0 {
		if t.captures.Add(1) <= maxCaptures {
			x.slot = true
			x.reqBody, x.respBody = &capture{limit: bodyBytes}, &capture{limit: bodyBytes}
		} else {
			t.captures.Add(-1)
		}
	}
	if req.Body != nil && req.Body != stack.NoBody {
		// NoBody stays itself: the layers and engines below frame a
		// request without a body by it.
		req.Body = withLen(req.Body, &requestBody{Body: req.Body, x: x})
	}
	return x
}

// answered sends the request event and the response event (or the end
// event of a request that failed) to the sessions req still matches, and
// wraps the response body to see its end.
func (x *exchange) answered(req *stack.Request, resp *stack.Response, err error) (*stack.Response, error) {
	matched := x.sessions[:0:0]
	for _, s := range x.sessions {
		if s.filter.matchRouted(x.direction, req) {
			matched = append(matched, s)
		}
	}
	x.sessions = matched
	if len(matched) == 0 {
		x.release()
		return resp, err
	}
	x.source, x.dest = x.tap.peers(x.direction, req)
	for _, s := range matched {
		s.emit(x.requestEvent(s, req.Info.Route))
	}
	if err != nil {
		x.end(nil, err)
		return nil, err
	}
	x.status = resp.Status
	x.grpcHeader = resp.Header.Get("grpc-status")
	x.proxyError = resp.Header.Get(proxyerror.Header)
	latency := since(x.tap.now, x.start)
	for _, s := range matched {
		s.emit(x.responseEvent(s, resp.Header, latency))
	}
	if resp.Body == stack.NoBody || resp.Body == nil {
		x.end(nil, nil)
		return resp, nil
	}
	resp.Body = withLen(resp.Body, &responseBody{Body: resp.Body, x: x})
	return resp, nil
}

// end sends the end event, once: the response body ended (trailers), or
// failed, or the exchange failed without an answer.
func (x *exchange) end(trailers stack.Header, err error) {
	x.ended.Do(func() {
		grpc := int32(-1)
		code := x.grpcHeader
		if code == "" {
			code = trailers.Get("grpc-status")
		}
		if n, perr := strconv.Atoi(code); perr == nil && code != "" {
			grpc = int32(n)
		}
		duration := since(x.tap.now, x.start)
		for _, s := range x.sessions {
			ev := x.event(s)
			end := &tappb.End{
				GrpcStatus: grpc, Duration: durationpb.New(duration), Status: uint32(x.status),
				RequestBytes: x.reqBytes.Load(), ResponseBytes: x.respBytes.Load(), Error: reason(err),
			}
			if end.Error == "" {
				end.Error = x.proxyError
			}
			ev.Kind = &tappb.Event_End{End: end}
			if s.bodyBytes > 0 {
				end.ResponseBodyPrefix, end.ResponseBodyTruncated = x.bodyFor(s, x.respBody)
			}
			s.emit(ev)
		}
		x.release()
	})
}

func (x *exchange) release() {
	if x.slot {
		x.slot = false
		x.reqBody.stop()
		x.respBody.stop()
		x.tap.captures.Add(-1)
	}
}

func (x *exchange) event(s *session) *tappb.Event {
	return &tappb.Event{Stream: x.id, Time: timestamppb.New(x.tap.now()), Direction: x.direction, Source: x.source, Destination: x.dest}
}

func (x *exchange) requestEvent(s *session, route string) *tappb.Event {
	ev := x.event(s)
	ev.Time = timestamppb.New(x.start)
	rs := &tappb.RequestStart{
		Method: x.method, Scheme: x.scheme, Authority: x.authority, Path: x.path, Route: route,
		Headers: headers(s, x.header),
	}
	if s.bodyBytes > 0 {
		rs.BodyPrefix, rs.BodyTruncated = x.bodyFor(s, x.reqBody)
	}
	ev.Kind = &tappb.Event_Request{Request: rs}
	return ev
}

func (x *exchange) responseEvent(s *session, h stack.Header, latency time.Duration) *tappb.Event {
	ev := x.event(s)
	ev.Kind = &tappb.Event_Response{Response: &tappb.ResponseStart{
		Status: uint32(x.status), Latency: durationpb.New(latency), Headers: headers(s, h),
	}}
	return ev
}

// bodyFor is what session s may see of a captured body: its own share of
// the prefix, redacted by its rules. Without a capture (none was possible)
// it is empty and said to be truncated.
func (x *exchange) bodyFor(s *session, c *capture) ([]byte, bool) {
	if c == nil {
		return nil, true
	}
	prefix, truncated := c.snapshot(s.bodyBytes)
	out, cut := s.body.Apply(prefix)
	return out, truncated || cut
}

func headers(s *session, h stack.Header) []*tappb.Header {
	out := make([]*tappb.Header, len(h))
	for i, f := range h {
		out[i] = &tappb.Header{Name: f.Name, Value: s.headers.Value(f.Name, f.Value)}
	}
	return out
}

// reason is why an exchange ended without its whole answer, as a tap
// shows it; empty for none.
func reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded"
	}
	const maxReason = 256
	msg := err.Error()
	if len(msg) > maxReason {
		msg = msg[:maxReason]
	}
	return msg
}

// errNotReadToEnd ends an exchange whose response body was closed before
// its end.
var errNotReadToEnd = errors.New("response body abandoned before its end")

// requestBody counts and copies the request body as the layers below read
// it. It does not implement stack.Unwrapper: it must see every byte.
type requestBody struct {
	stack.Body
	x *exchange
}

func (b *requestBody) Read(p []byte) (int, error) {
	n, err := b.Body.Read(p)
	if n > 0 {
		b.x.reqBytes.Add(uint64(n))
		b.x.reqBody.write(p[:n])
	}
	return n, err
}

// responseBody counts and copies the response body as the client's engine
// reads it, and ends the exchange with the body. It does not implement
// stack.Unwrapper: it must see every byte.
type responseBody struct {
	stack.Body
	x *exchange
}

func (b *responseBody) Read(p []byte) (int, error) {
	n, err := b.Body.Read(p)
	if n > 0 {
		b.x.respBytes.Add(uint64(n))
		b.x.respBody.write(p[:n])
	}
	switch {
	case err == io.EOF:
		b.x.end(b.Body.Trailers(), nil)
	case err != nil:
		b.x.end(nil, err)
	}
	return n, err
}

func (b *responseBody) Close() error {
	b.x.end(nil, errNotReadToEnd) // does nothing after the end
	return b.Body.Close()
}

// lenBody is a body that knows what is left of it (stack.BytesBody): the
// engines send such a small body with its head, framed by its length.
type lenBody interface{ Len() int }

// withLen returns wrapper, which reads through inner, with inner's Len
// when inner has one, so that the tap changes no body's framing.
func withLen(inner, wrapper stack.Body) stack.Body {
	if l, ok := inner.(lenBody); ok {
		return lenWrapper{Body: wrapper, len: l}
	}
	return wrapper
}

type lenWrapper struct {
	stack.Body
	len lenBody
}

func (w lenWrapper) Len() int { return w.len.Len() }

// capture keeps the first limit bytes written to it, and how many there
// were; safe for a writer and readers on other goroutines.
type capture struct {
	limit int

	mu      sync.Mutex
	buf     []byte
	seen    int
	stopped bool
}

// write copies what fits under the limit; nothing once stopped. A nil
// capture takes nothing.
func (c *capture) write(p []byte) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen += len(p)
	if c.stopped {
		return
	}
	if room := c.limit - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
}

// snapshot returns a copy of the first n bytes, and whether more than n
// were seen.
func (c *capture) snapshot(n int) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf[:min(n, len(c.buf))]...), c.seen > n
}

// stop frees the buffer once nobody will read it again.
func (c *capture) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped, c.buf = true, nil
}
