package detect

import (
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"time"
)

// errHelloCaptured aborts the TLS handshake once the ClientHello is known.
var errHelloCaptured = errors.New("client hello captured")

// parseClientHello lets crypto/tls parse the ClientHello that begins the
// buffer, reading more of it from the connection as crypto/tls asks (at most
// maxClientHello bytes in all). The handshake is aborted as soon as the hello
// is parsed; nothing is ever written to the client. On failure it returns the
// read error that stopped it, if any (timeout, EOF, errBufferFull), or nil
// for a ClientHello that crypto/tls rejected.
func (s *sniffer) parseClientHello() (*ClientHello, error) {
	var hello *ClientHello
	config := &tls.Config{
		GetConfigForClient: func(info *tls.ClientHelloInfo) (*tls.Config, error) {
			hello = &ClientHello{ServerName: info.ServerName, ALPN: slices.Clone(info.SupportedProtos)}
			return nil, errHelloCaptured
		},
	}
	_ = tls.Server(&helloConn{s: s}, config).Handshake() // always fails: we abort it
	if hello != nil {
		return hello, nil
	}
	return nil, s.readErr
}

// helloConn feeds crypto/tls the sniffer's buffer, filling it from the
// connection on demand, and swallows whatever crypto/tls tries to write (the
// alert that follows our abort).
type helloConn struct {
	s   *sniffer
	off int
}

func (c *helloConn) Read(p []byte) (int, error) {
	if c.off == len(c.s.buf) {
		if err := c.s.fill(maxClientHello); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.s.buf[c.off:])
	c.off += n
	return n, nil
}

func (c *helloConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *helloConn) Close() error                       { return nil }
func (c *helloConn) LocalAddr() net.Addr                { return c.s.conn.LocalAddr() }
func (c *helloConn) RemoteAddr() net.Addr               { return c.s.conn.RemoteAddr() }
func (c *helloConn) SetDeadline(t time.Time) error      { return nil }
func (c *helloConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *helloConn) SetWriteDeadline(t time.Time) error { return nil }
