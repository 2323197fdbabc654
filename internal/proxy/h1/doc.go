// Package h1 is Skein's HTTP/1.x engine: a Server that turns client
// connections into stack.Requests one after another (keep-alive, chunked
// bodies and trailers, 100-continue, upgrades and CONNECT as byte tunnels)
// and a Client that sends stack.Requests to one HTTP/1.1 upstream over a
// pool of keep-alive connections. It parses and writes HTTP/1 itself, with
// strict framing rules against request smuggling; it has no policy: where
// a request goes is the Handler's business.
package h1
