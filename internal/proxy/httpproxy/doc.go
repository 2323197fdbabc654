// Package httpproxy forwards HTTP/1.x and HTTP/2 (gRPC included) requests one
// by one. It serves detected client connections, composes the per-request
// layers (metrics, then forwarding) in one place, and hands each request to an
// Upstream that decides where it goes. It does not pick endpoints or dial
// sockets itself: the Upstream does.
package httpproxy
