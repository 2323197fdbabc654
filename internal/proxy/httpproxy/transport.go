package httpproxy

import (
	"context"
	"net"
	"net/http"
	"time"
)

// DialFunc opens a connection to addr.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Transports is the pooled client side: one transport per HTTP version, so
// a request leaves in the version it arrived in. Connections are pooled per
// endpoint address.
type Transports struct {
	h1 *http.Transport
	h2 *http.Transport
}

// NewTransports returns transports that open connections with dial.
func NewTransports(dial DialFunc) *Transports {
	var h1, h2 http.Protocols
	h1.SetHTTP1(true)
	h2.SetUnencryptedHTTP2(true)
	base := func(p *http.Protocols) *http.Transport {
		return &http.Transport{
			Proxy:       nil, // never an HTTP proxy from the environment
			DialContext: dial,
			Protocols:   p,
			// The proxy passes bodies through as they are.
			DisableCompression:     true,
			MaxIdleConnsPerHost:    100,
			IdleConnTimeout:        90 * time.Second,
			MaxResponseHeaderBytes: maxHeaderBytes,
			HTTP2: &http.HTTP2Config{
				MaxReceiveBufferPerStream:     1 << 20,
				MaxReceiveBufferPerConnection: 4<<20 - 1,
				// Find dead connections without waiting for TCP.
				SendPingTimeout: 30 * time.Second,
				PingTimeout:     10 * time.Second,
			},
		}
	}
	return &Transports{h1: base(&h1), h2: base(&h2)}
}

// For returns the transport for req's HTTP version.
func (t *Transports) For(req *http.Request) http.RoundTripper {
	if req.ProtoMajor == 2 {
		return t.h2
	}
	return t.h1
}

// HTTP1 is the HTTP/1.1 transport.
func (t *Transports) HTTP1() http.RoundTripper { return t.h1 }

// HTTP2 is the HTTP/2 (prior knowledge) transport.
func (t *Transports) HTTP2() http.RoundTripper { return t.h2 }

// OrigProtoHeader marks a request that a client sent in HTTP/1.x and the
// outbound proxy carries over HTTP/2 inside the mesh, so that the inbound
// proxy hands it to the application in HTTP/1.1 again.
const OrigProtoHeader = "Skein-Orig-Proto"

// IsUpgrade reports whether req asks to switch protocols (WebSocket): such
// requests stay HTTP/1.1 end to end.
func IsUpgrade(req *http.Request) bool {
	return req.ProtoMajor == 1 && req.Header.Get("Upgrade") != ""
}

// CloseIdleConnections closes pooled connections nobody is using, such as
// those to endpoints that were removed.
func (t *Transports) CloseIdleConnections() {
	t.h1.CloseIdleConnections()
	t.h2.CloseIdleConnections()
}

// To returns a shallow copy of req addressed to addr. Headers, body and
// trailers are shared with req: the server fills the trailers in only once
// the body is read, and the transport must see them then.
func To(req *http.Request, addr string) *http.Request {
	out := new(http.Request)
	*out = *req
	u := *req.URL
	u.Host = addr
	out.URL = &u
	return out
}
