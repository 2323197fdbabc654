package httpproxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"

	"github.com/skeinmesh/skein/internal/proxy/tcp"
)

// tunnel carries a CONNECT request as bytes: it sends the request itself to
// where the Upstream dials, then copies both ways. The upstream's answer
// (200 or an error) reaches the client unchanged.
func (f *forwarder) tunnel(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 1 {
		// TODO: HTTP/2 CONNECT (RFC 8441 extended or plain) needs a stream
		// tunnel; a client using it gets 501 until someone needs it.
		http.Error(w, "CONNECT over HTTP/2 is not supported", http.StatusNotImplemented)
		return
	}
	upstream, err := f.upstream.DialTunnel(r.Context(), r)
	if err != nil {
		f.proxy.ErrorHandler(w, r, err)
		return
	}
	defer upstream.Close()
	client, buffered, err := http.NewResponseController(w).Hijack()
	if err != nil {
		f.log.Info("CONNECT: hijack failed", "err", err)
		http.Error(w, "cannot tunnel on this connection", http.StatusInternalServerError)
		return
	}
	defer client.Close()
	if ri := RequestInfoFrom(r.Context()); ri != nil {
		ri.Upgraded = true
	}
	if err := r.Write(upstream); err != nil {
		f.log.Info("CONNECT: writing request upstream", "err", err)
		return
	}
	down := &bufferedConn{Conn: client, r: buffered.Reader}
	// The request's context ends with the handler; the tunnel lives on
	// until either side closes it.
	if _, err := tcp.Forward(context.WithoutCancel(r.Context()), down, upstream, nil); err != nil {
		f.log.Debug("CONNECT tunnel ended", "err", err)
	}
}

// bufferedConn reads what the HTTP server had already buffered before
// reading on from the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite lets tcp.Forward half-close the client side.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

var _ io.Reader = (*bufferedConn)(nil)
