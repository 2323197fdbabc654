package stack

import (
	"io"
)

// Request is one HTTP request as the proxy carries it, whichever version
// the client spoke.
type Request struct {
	Method string
	// Scheme is :scheme ("http" or "https"); HTTP/1 requests get "http".
	Scheme string
	// Authority is :authority, or Host for HTTP/1 (the CONNECT target for
	// CONNECT).
	Authority string
	// Path is :path, or the HTTP/1 request-target in origin form; "" for
	// CONNECT (without :protocol).
	Path string
	// Protocol is the :protocol of an extended CONNECT (RFC 8441), "" else.
	Protocol string
	// Header holds the regular fields, no pseudo-headers, no
	// connection-specific ones. An HTTP/1 upgrade request (WebSocket) keeps
	// its Upgrade field, and the engines restore Connection: upgrade.
	Header Header
	// Body is never nil: NoBody when the request has none (END_STREAM on
	// its HEADERS, or no content in HTTP/1). After a 101 or a 2xx answer to
	// CONNECT it carries the client's bytes of the tunnel.
	Body Body
	// ProtoMajor is the HTTP version the client spoke: 1 or 2.
	ProtoMajor int
	// Conn describes the downstream connection the request came on. Never
	// nil; shared by every request of the connection: read only.
	Conn *ConnInfo
	// Info is filled in by layers on the way down (where the request
	// went), for layers on the way up (metrics, tap) to read.
	Info RequestInfo
	// GotConn, if set, is called by a client engine once the request has
	// an upstream connection and is about to be written: the balancer's
	// latency sample starts there, not before connecting.
	GotConn func()
}

// IsGRPC reports whether the request is a gRPC call.
func (r *Request) IsGRPC() bool { return IsGRPC(r.Header.Get("content-type")) }

// IsUpgrade reports whether r is an HTTP/1 request asking to switch
// protocols (WebSocket).
func (r *Request) IsUpgrade() bool { return r.ProtoMajor == 1 && r.Header.Has("upgrade") }

// Response is one HTTP response as the proxy carries it. Interim 1xx
// answers other than 101 are the engines' business and never reach layers.
type Response struct {
	Status int
	Header Header
	// Body is never nil: NoBody when there is none. For a 101 answer, or a
	// 2xx answer to CONNECT, it carries the server's bytes of the tunnel.
	Body Body
}

// Body is a streamed message body and the trailers after it.
type Body interface {
	// Read reads the body as io.Reader does. It returns io.EOF once the
	// whole body and its trailers have arrived, and another error when the
	// body was cut short (the stream reset, the connection lost, the
	// request cancelled).
	Read(p []byte) (int, error)
	// Trailers returns the trailers that followed the body, or nil. It is
	// only meaningful after Read returned io.EOF.
	Trailers() Header
	// Close says the reader is done with the body. Before io.EOF it
	// abandons the body: the engine resets the stream or closes the
	// connection so that the sender stops. Close is safe to call twice.
	Close() error
}

// Unwrapper is a Body that wraps another only to see how it ends (its
// EOF and trailers, a failure, Close), not its bytes. An engine may move
// the inner body's bytes itself, without Read (HTTP/2 splices a received
// body into another connection, which saves a goroutine hand-over and a
// write per message); it then calls the wrapper's Read once with no room
// when the inner body has ended or failed (that Read returns at once, with
// io.EOF or the failure), and Close, so the wrapper sees what it would
// have seen. Unwrap counts as reading the body. A wrapper that must see
// every Read (a tunnel's idle watch) does not implement it.
type Unwrapper interface {
	Body
	Unwrap() Body
}

// NoBody is the empty body.
var NoBody Body = noBody{}

type noBody struct{}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }
func (noBody) Trailers() Header         { return nil }
func (noBody) Close() error             { return nil }

// BytesBody returns a body holding b and then trailers (nil for none).
func BytesBody(b []byte, trailers Header) Body {
	return &bytesBody{b: b, trailers: trailers}
}

type bytesBody struct {
	b        []byte
	trailers Header
}

func (b *bytesBody) Read(p []byte) (int, error) {
	if len(b.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.b)
	b.b = b.b[n:]
	return n, nil
}

func (b *bytesBody) Trailers() Header { return b.trailers }
func (b *bytesBody) Close() error     { return nil }

// Len is what is left to read; the engines use it to send a small body
// with its headers and END_STREAM in one write.
func (b *bytesBody) Len() int { return len(b.b) }
