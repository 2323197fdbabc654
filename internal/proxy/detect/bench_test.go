package detect

import (
	"bytes"
	"testing"
)

func benchmarkDetect(b *testing.B, input []byte, want Protocol) {
	b.ReportAllocs()
	b.SetBytes(int64(len(input)))
	conn := newBytesConn(input)
	for b.Loop() {
		conn.r.Reset(input)
		res, _, err := Detect(conn, 0)
		if err != nil || res.Protocol != want {
			b.Fatalf("Detect = %v, %v; want %v", res.Protocol, err, want)
		}
	}
}

func BenchmarkDetectHTTP1(b *testing.B) {
	input := []byte("GET /api/v1/users/42?expand=orders HTTP/1.1\r\nHost: users.default.svc\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	benchmarkDetect(b, input, HTTP1)
}

func BenchmarkDetectHTTP2(b *testing.B) {
	input := append([]byte(http2Preface), bytes.Repeat([]byte{0}, 64)...)
	benchmarkDetect(b, input, HTTP2)
}
