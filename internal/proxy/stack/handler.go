package stack

import "context"

// Handler answers requests. Serve returns the response (whose body the
// caller reads to the end or closes) or an error when there is none to
// give; the errors layer turns errors into answers. ctx ends when the
// client abandons the request (HTTP/2 RST_STREAM, HTTP/1 connection lost)
// or the proxy's shutdown grace ends; a Handler must then stop, and a
// client engine resets its upstream stream so that the server sees the
// cancel.
//
// Serve owns req.Body: it reads it to the end or closes it.
type Handler interface {
	Serve(ctx context.Context, req *Request) (*Response, error)
}

// HandlerFunc is a function used as a Handler.
type HandlerFunc func(ctx context.Context, req *Request) (*Response, error)

// Serve calls f.
func (f HandlerFunc) Serve(ctx context.Context, req *Request) (*Response, error) { return f(ctx, req) }

// Layer adds one feature to the request path by wrapping the next
// handler, as a gRPC interceptor or a CoreDNS plugin does.
type Layer func(next Handler) Handler

// Build stacks layers over end: the first layer is the outermost, the one a
// request meets first.
func Build(end Handler, layers ...Layer) Handler {
	h := end
	for i := len(layers) - 1; i >= 0; i-- {
		h = layers[i](h)
	}
	return h
}
