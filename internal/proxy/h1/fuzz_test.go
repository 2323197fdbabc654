package h1

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// FuzzRequest feeds arbitrary bytes to the request reader and the body
// reader: nothing may panic, and an accepted head must be framed one way.
func FuzzRequest(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	f.Add("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
	f.Add("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc")
	f.Add("CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n")
	f.Add("GET http://a/b?c HTTP/1.1\r\nHost: x\r\nConnection: upgrade, x-y\r\nUpgrade: websocket\r\nX-Y: 1\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		br := bufio.NewReaderSize(strings.NewReader(in), 64)
		head, err := readHead(br, nil, 4096, 1024)
		if err != nil {
			return
		}
		m, fr, err := parseRequest(head)
		if err != nil {
			return
		}
		if fr.chunked && fr.contentLength >= 0 {
			t.Fatalf("accepted both chunked and Content-Length: %q", in)
		}
		if !fr.hasBody() {
			return
		}
		b := &m.body
		*b = bodyReader{br: br, maxTrailer: 4096}
		if fr.chunked {
			b.mode = modeChunked
		} else {
			b.mode, b.left = modeLength, fr.contentLength
		}
		_, _ = io.Copy(io.Discard, b)
		_ = b.Trailers()
	})
}
