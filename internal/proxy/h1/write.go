package h1

import (
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// chunkRoom is the space kept before a chunk's data for its size line.
const chunkRoom = 18 // 16 hex digits and CRLF

// bufPool holds write buffers: a message head, a small body or one chunk.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 128<<10 {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// appendStatusLine appends "HTTP/1.1 200 OK\r\n".
func appendStatusLine(b []byte, status int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	return append(b, '\r', '\n')
}

// appendField appends "Name: value\r\n" with the name in canonical form
// (content-type -> Content-Type).
func appendField(b []byte, name, value string) []byte {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		upper = c == '-'
		b = append(b, c)
	}
	b = append(b, ':', ' ')
	b = append(b, value...)
	return append(b, '\r', '\n')
}

// appendFields appends the end-to-end fields of h: connection-specific
// ones and framing (Content-Length, Transfer-Encoding) are the engine's to
// write; Upgrade only when keepUpgrade. A field a peer could not parse back
// (a name that is no token, a value with CR, LF or NUL) is left out.
func appendFields(b []byte, h stack.Header, keepUpgrade bool) []byte {
	for _, f := range h {
		switch f.Name {
		case "connection", "keep-alive", "proxy-connection", "te", "transfer-encoding",
			"content-length", "host", "trailer":
			continue
		case "upgrade":
			if !keepUpgrade {
				continue
			}
		}
		if !validField(f) {
			continue
		}
		b = appendField(b, f.Name, f.Value)
	}
	return b
}

func validField(f stack.Field) bool {
	if !isToken(f.Name) {
		return false
	}
	for i := 0; i < len(f.Value); i++ {
		if c := f.Value[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// appendChunkSize writes n's chunk-size line so that it ends right before
// b[end:], and returns where it starts. b[end-chunkRoom:end] must be free.
func putChunkSize(b []byte, end int, n int) int {
	i := end - 2
	b[i], b[i+1] = '\r', '\n'
	if n == 0 {
		i--
		b[i] = '0'
		return i
	}
	for ; n > 0; n >>= 4 {
		i--
		b[i] = "0123456789abcdef"[n&0xf]
	}
	return i
}

// appendLastChunk appends the last chunk, the trailers and the final CRLF.
func appendLastChunk(b []byte, trailers stack.Header) []byte {
	b = append(b, '0', '\r', '\n')
	b = appendFields(b, trailers, false)
	return append(b, '\r', '\n')
}

// noBodyStatus reports whether a response with status has no body.
func noBodyStatus(status int) bool {
	return status < 200 || status == 204 || status == 304
}

// bodyLen is implemented by bodies that know what is left of them
// (stack.BytesBody).
type bodyLen interface{ Len() int }

// connWriter writes whole buffers to a connection.
type connWriter interface{ write(b []byte) error }

// copyRaw writes the pending head b and then body's bytes: n of them when
// n >= 0, else all until EOF. A body shorter or longer than n is an error.
func copyRaw(w connWriter, b []byte, body stack.Body, n int64) ([]byte, error) {
	if cap(b)-len(b) < 4<<10 {
		b = append(b, make([]byte, 32<<10)...)[:len(b)]
	}
	var sent int64
	for {
		space := b[len(b):cap(b)]
		if n >= 0 && int64(len(space)) > n-sent+1 {
			space = space[:n-sent+1]
		}
		m, err := body.Read(space)
		sent += int64(m)
		if n >= 0 && sent > n {
			m -= int(sent - n)
			err = errBodyTooLong
		}
		if out := b[:len(b)+m]; len(out) > 0 {
			if werr := w.write(out); werr != nil {
				return b[:0], werr
			}
		}
		b = b[:0]
		if err == io.EOF {
			if n >= 0 && sent != n {
				return b, io.ErrUnexpectedEOF
			}
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// copyChunked writes the pending head b and then body as chunks, each
// chunk in one write, the last one with the trailers.
func copyChunked(w connWriter, b []byte, body stack.Body) ([]byte, error) {
	if cap(b)-len(b) < chunkRoom+4<<10 {
		b = append(b, make([]byte, 32<<10)...)[:len(b)]
	}
	for {
		start := len(b)
		dataAt := start + chunkRoom
		m, err := body.Read(b[dataAt : cap(b)-2])
		out := b[:start]
		if m > 0 {
			hs := putChunkSize(b[:dataAt], dataAt, m)
			out = out[:start+copy(b[start:cap(b)], b[hs:dataAt+m])]
			out = append(out, '\r', '\n')
		}
		if err == io.EOF {
			out = appendLastChunk(out, body.Trailers())
		}
		if len(out) > 0 {
			if werr := w.write(out); werr != nil {
				return b[:0], werr
			}
		}
		b = b[:0]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
