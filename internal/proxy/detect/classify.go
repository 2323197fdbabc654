package detect

import "strings"

// match says how far some bytes go towards one protocol's opening.
type match int

const (
	noMatch match = iota // cannot be the start of this protocol
	partial              // a proper prefix: more bytes needed
	matched              // the opening is complete
)

// http2Preface is the client connection preface of RFC 9113 section 3.4.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// maxMethodLen bounds an HTTP method so that a binary protocol whose first
// bytes happen to be token characters is recognised as Opaque quickly. The
// longest registered method (UPDATEREDIRECTREF) has 17 characters.
const maxMethodLen = 32

const (
	recordHeaderLen       = 5
	recordTypeHandshake   = 0x16
	handshakeClientHello  = 0x01
	maxTLSPlaintextRecord = 1 << 14
)

// classify decides the protocol of a connection that opened with b, or
// reports that it cannot decide yet (decided is false) because b is still a
// proper prefix of at least one protocol's opening.
func classify(b []byte) (p Protocol, decided bool) {
	h2, h1, tls := matchHTTP2(b), matchHTTP1(b), matchTLS(b)
	switch {
	case h2 == matched:
		return HTTP2, true
	case h1 == matched:
		return HTTP1, true
	case tls == matched:
		return TLS, true
	case h2 == noMatch && h1 == noMatch && tls == noMatch:
		return Opaque, true
	}
	return Opaque, false
}

func matchHTTP2(b []byte) match {
	n := min(len(b), len(http2Preface))
	switch {
	case string(b[:n]) != http2Preface[:n]:
		return noMatch
	case n < len(http2Preface):
		return partial
	}
	return matched
}

// matchHTTP1 matches a request line: method SP request-target SP
// HTTP/1.0 or HTTP/1.1, then CRLF (or a bare LF, which Go's and most other
// HTTP servers accept too).
func matchHTTP1(b []byte) match {
	// Method: 1..maxMethodLen token characters.
	i := 0
	for i < len(b) && i <= maxMethodLen && isTokenChar(b[i]) {
		i++
	}
	switch {
	case i > maxMethodLen:
		return noMatch
	case i == len(b):
		return partial
	case i == 0 || b[i] != ' ':
		return noMatch
	}
	i++
	// Request target: one or more visible characters (raw bytes >= 0x80
	// included, as many clients send unencoded UTF-8).
	start := i
	for i < len(b) && isTargetChar(b[i]) {
		i++
	}
	switch {
	case i == len(b):
		return partial
	case i == start || b[i] != ' ':
		return noMatch
	}
	i++
	return matchVersion(b[i:])
}

func matchVersion(b []byte) match {
	const prefix = "HTTP/1."
	n := min(len(b), len(prefix))
	if string(b[:n]) != prefix[:n] {
		return noMatch
	}
	if len(b) == n {
		return partial
	}
	if b[n] != '0' && b[n] != '1' {
		return noMatch
	}
	rest := b[n+1:]
	switch {
	case len(rest) == 0:
		return partial
	case rest[0] == '\n':
		return matched
	case rest[0] != '\r':
		return noMatch
	case len(rest) == 1:
		return partial
	case rest[1] == '\n':
		return matched
	}
	return noMatch
}

// matchTLS matches a TLS record header (handshake, version 3.x, a length
// that fits a plaintext record) followed by the ClientHello message type.
// Whether the ClientHello itself parses is left to crypto/tls.
func matchTLS(b []byte) match {
	header := b[:min(len(b), recordHeaderLen+1)]
	for i, c := range header {
		ok := true
		switch i {
		case 0:
			ok = c == recordTypeHandshake
		case 1:
			ok = c == 0x03 // SSL 3.0 and every TLS version since
		case 2:
			ok = c <= 0x04
		case 4:
			n := int(header[3])<<8 | int(c)
			ok = n > 0 && n <= maxTLSPlaintextRecord
		case 5:
			ok = c == handshakeClientHello
		}
		if !ok {
			return noMatch
		}
	}
	if len(header) <= recordHeaderLen {
		return partial
	}
	return matched
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110 5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isTargetChar(c byte) bool {
	return c > ' ' && c != 0x7f
}
