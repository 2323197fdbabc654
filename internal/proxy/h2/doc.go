// Package h2 is Skein's HTTP/2 engine: a Server that turns client
// connections into stack.Requests for a stack.Handler, and a Client that
// sends stack.Requests to one upstream over a pool of connections. Both are
// built on golang.org/x/net/http2's Framer and hpack, as grpc-go's transport
// is: per connection one reader goroutine (frames in) and one writer
// goroutine that drains a queue of frames and flushes only when the queue is
// empty, so a request's HEADERS, DATA and END_STREAM that are ready together
// leave in one write. It holds no policy: routes, retries and the rest are
// layers above it.
//
// Limits against hostile peers (rapid reset, CONTINUATION and control-frame
// floods, HPACK bombs, zero-window stalls, slowloris) live here, in
// Config; docs/proxy.md lists them.
package h2
