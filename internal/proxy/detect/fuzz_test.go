package detect

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func FuzzDetect(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\n", "POST /x HTTP/1.0\n", http2Preface, "PRI * HTTP/2.0\r\n",
		"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", "SSH-2.0-x\r\n", "", "\x00",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		res, conn, err := Detect(newBytesConn(input), 0)
		if err != nil {
			t.Fatalf("Detect on input ending in EOF: %v", err)
		}
		got, _ := io.ReadAll(conn)
		if !bytes.Equal(got, input) {
			t.Fatalf("replayed %q, want %q", got, input)
		}
		switch res.Protocol {
		case HTTP2:
			if !strings.HasPrefix(string(input), http2Preface) {
				t.Fatalf("HTTP2 without the preface: %q", input)
			}
		case TLS:
			if res.TLS == nil || input[0] != recordTypeHandshake {
				t.Fatalf("TLS without a ClientHello: %q", input)
			}
		}
	})
}
