// Package detect tells which protocol a client speaks from the first bytes of
// its connection: HTTP/2 with prior knowledge, HTTP/1.x, TLS (with the SNI and
// ALPN of its ClientHello) or, failing those, opaque TCP. It only looks; it
// never answers the client, and it hands back a connection that replays every
// byte it read. Ports marked opaque should skip it altogether.
package detect

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Protocol is what a connection's first bytes look like.
type Protocol int

const (
	// Opaque is anything else: forward the bytes as they are.
	Opaque Protocol = iota
	// HTTP1 is a connection that opened with an HTTP/1.0 or HTTP/1.1 request line.
	HTTP1
	// HTTP2 is a connection that opened with the HTTP/2 prior-knowledge preface.
	HTTP2
	// TLS is a connection that opened with a TLS ClientHello.
	TLS
)

func (p Protocol) String() string {
	switch p {
	case Opaque:
		return "opaque"
	case HTTP1:
		return "http/1"
	case HTTP2:
		return "http/2"
	case TLS:
		return "tls"
	}
	return fmt.Sprintf("Protocol(%d)", int(p))
}

// ClientHello is what a TLS client announced before any encryption.
type ClientHello struct {
	ServerName string   // SNI; empty if the client sent none
	ALPN       []string // protocols offered, in the client's order
}

// Result is the outcome of Detect.
type Result struct {
	Protocol Protocol
	TLS      *ClientHello // set for TLS only
}

// ErrTimeout means the client sent the beginning of an HTTP request line,
// HTTP/2 preface or TLS ClientHello and then stalled until the detection
// timeout. Such a client is not speaking a server-speaks-first protocol (it
// spoke), nor will it finish: the caller should close the connection.
var ErrTimeout = errors.New("protocol detection timed out on a partial request")

// Limits on what Detect buffers per connection.
const (
	// maxRequestLine bounds the HTTP/1 request line. A line still plausible
	// at this length is reported as HTTP1, not Opaque: the HTTP server then
	// applies its own limits (e.g. 414), and a client cannot escape
	// per-route policy by padding its URL until detection gives up.
	maxRequestLine = 8 << 10
	// maxClientHello bounds the TLS bytes read to parse a ClientHello: one
	// full record. A ClientHello larger than that is reported as Opaque.
	maxClientHello = recordHeaderLen + 1<<14
	// initialBuffer is enough for nearly all request lines and ClientHellos;
	// the buffer grows by doubling up to the limits above when it is not.
	initialBuffer = 2 << 10
)

// Detect reads the first bytes of conn until it can tell the protocol and
// returns the result together with a net.Conn that replays every byte read
// before reading on from conn, so callers lose nothing. The returned conn is
// never nil, even on error; closing it closes conn.
//
// Detect decides as early as it can: as soon as the bytes read can no longer
// begin an HTTP/2 preface, an HTTP/1 request line or a TLS ClientHello, the
// answer is Opaque. conn's read deadline is set to now+timeout while it reads
// (no deadline if timeout <= 0) and cleared afterwards.
//
//   - Nothing read before the timeout (a server-speaks-first protocol on a port
//     not marked opaque): Opaque, no error.
//   - A partial preface, request line or ClientHello at the timeout: ErrTimeout.
//   - EOF before a decision: Opaque, no error, with the bytes read replayed, so
//     that the peer sees exactly what the client sent before it half-closed.
//   - A ClientHello that crypto/tls cannot parse, or that does not fit in one
//     TLS record: Opaque, no error.
func Detect(conn net.Conn, timeout time.Duration) (Result, net.Conn, error) {
	if timeout > 0 {
		if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return Result{}, newReplayConn(conn, nil), fmt.Errorf("setting detection deadline: %w", err)
		}
	}
	s := &sniffer{conn: conn, buf: make([]byte, 0, initialBuffer)}
	res, err := s.detect()
	if timeout > 0 {
		if cerr := conn.SetReadDeadline(time.Time{}); cerr != nil && err == nil {
			err = fmt.Errorf("clearing detection deadline: %w", cerr)
		}
	}
	return res, newReplayConn(conn, s.buf), err
}

// sniffer accumulates a connection's first bytes in one bounded buffer.
type sniffer struct {
	conn    net.Conn
	buf     []byte
	readErr error // the error that stopped fill, kept for the ClientHello parser
}

var errBufferFull = errors.New("detection buffer full")

func (s *sniffer) detect() (Result, error) {
	for {
		switch p, decided := classify(s.buf); {
		case decided && p == TLS:
			return s.detectTLS()
		case decided:
			return Result{Protocol: p}, nil
		case len(s.buf) >= maxRequestLine:
			// Only an HTTP/1 request line can still be undecided this long.
			return Result{Protocol: HTTP1}, nil
		}
		if err := s.fill(maxRequestLine); err != nil {
			return s.undecided(err)
		}
	}
}

func (s *sniffer) detectTLS() (Result, error) {
	hello, err := s.parseClientHello()
	switch {
	case hello != nil:
		return Result{Protocol: TLS, TLS: hello}, nil
	case isTimeout(err):
		return Result{}, fmt.Errorf("%w (%d bytes of a TLS ClientHello)", ErrTimeout, len(s.buf))
	case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errBufferFull):
		return Result{}, fmt.Errorf("reading TLS ClientHello: %w", err)
	}
	// Malformed, oversized or cut short by EOF: not ours to judge.
	return Result{Protocol: Opaque}, nil
}

// undecided turns the read error that interrupted detection into a result.
func (s *sniffer) undecided(err error) (Result, error) {
	switch {
	case isTimeout(err) && len(s.buf) == 0:
		return Result{Protocol: Opaque}, nil
	case isTimeout(err):
		return Result{}, fmt.Errorf("%w (%d bytes: %q)", ErrTimeout, len(s.buf), truncate(s.buf, 32))
	case errors.Is(err, io.EOF):
		return Result{Protocol: Opaque}, nil
	}
	return Result{}, fmt.Errorf("reading first bytes: %w", err)
}

// fill reads once more from the connection into the buffer, growing it up to
// limit bytes. It reports errBufferFull when the buffer already holds limit.
func (s *sniffer) fill(limit int) error {
	if len(s.buf) == cap(s.buf) {
		if cap(s.buf) >= limit {
			s.readErr = errBufferFull
			return errBufferFull
		}
		grown := make([]byte, len(s.buf), min(2*cap(s.buf), limit))
		copy(grown, s.buf)
		s.buf = grown
	}
	for {
		n, err := s.conn.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		if n > 0 {
			return nil
		}
		if err != nil {
			s.readErr = err
			return err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
