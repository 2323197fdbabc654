package detect

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// noDecisionWait is the timeout for inputs that must be decided without
// waiting: an implementation that waits instead ends in ErrTimeout and fails.
const noDecisionWait = 10 * time.Second

func TestDetectDecidesFromFirstBytes(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  Protocol
	}{
		{"GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP1},
		{"POST HTTP/1.0", "POST /api/v1/items?x=1 HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi", HTTP1},
		{"custom method token", "M-SEARCH * HTTP/1.1\r\n", HTTP1},
		{"bare LF", "PURGE /cache HTTP/1.1\n", HTTP1},
		{"method PRI with HTTP/1.1", "PRI /x HTTP/1.1\r\n", HTTP1},
		{"absolute-form target", "GET http://a.b/c HTTP/1.1\r\n", HTTP1},
		{"h2 preface", http2Preface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00", HTTP2},
		{"h2 preface alone", http2Preface, HTTP2},
		{"ssh banner", "SSH-2.0-OpenSSH_9.6\r\n", Opaque},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\n", Opaque},
		{"HTTP/1.2", "GET / HTTP/1.2\r\n", Opaque},
		{"double space", "GET  / HTTP/1.1\r\n", Opaque},
		{"lowercase version", "GET / http/1.1\r\n", Opaque},
		{"control char in target", "GET /\x01 HTTP/1.1\r\n", Opaque},
		{"CR without LF", "GET / HTTP/1.1\rX", Opaque},
		{"method too long", strings.Repeat("A", 40) + " / HTTP/1.1\r\n", Opaque},
		{"binary", "\x00\x01\x02\x03", Opaque},
		{"postgres startup", "\x00\x00\x00\x08\x04\xd2\x16\x2f", Opaque},
		{"tls alert record", "\x15\x03\x03\x00\x02\x02\x28", Opaque},
		{"tls handshake not client hello", "\x16\x03\x03\x00\x04\x02\x00\x00\x00", Opaque},
		{"tls oversized record", "\x16\x03\x01\x40\x01\x01", Opaque},
		{"malformed client hello", "\x16\x03\x01\x00\x08\x01\x00\x00\x04\xff\xff\xff\xff", Opaque},
		{"request line over the limit", "GET /" + strings.Repeat("a", maxRequestLine) + " HTTP/1.1\r\n", HTTP1},
	}
	for _, tt := range tests {
		for _, split := range []bool{false, true} {
			name := tt.name
			if split {
				name += "/one byte per write"
			}
			t.Run(name, func(t *testing.T) {
				res, replay, err := detectOverPipe(t, []byte(tt.input), split, noDecisionWait)
				if err != nil {
					t.Fatalf("Detect(%q): %v", truncate([]byte(tt.input), 40), err)
				}
				if res.Protocol != tt.want {
					t.Errorf("Detect(%q) = %v, want %v", truncate([]byte(tt.input), 40), res.Protocol, tt.want)
				}
				if res.TLS != nil {
					t.Errorf("Detect(%q) gave a ClientHello for %v", truncate([]byte(tt.input), 40), res.Protocol)
				}
				if got := replay(); got != tt.input {
					t.Errorf("replayed %q, want %q", truncate([]byte(got), 40), truncate([]byte(tt.input), 40))
				}
			})
		}
	}
}

func TestDetectReadsTLSClientHello(t *testing.T) {
	tests := []struct {
		name       string
		serverName string
		alpn       []string
	}{
		{"mesh ALPN", "web.default.svc.cluster.local", []string{"skein/1"}},
		{"h2 and http/1.1", "example.com", []string{"h2", "http/1.1"}},
		{"no SNI no ALPN", "", nil},
	}
	for _, tt := range tests {
		for _, split := range []bool{false, true} {
			name := tt.name
			if split {
				name += "/one byte per write"
			}
			t.Run(name, func(t *testing.T) {
				testDetectClientHello(t, tt.serverName, tt.alpn, split)
			})
		}
	}
}

func testDetectClientHello(t *testing.T, serverName string, alpn []string, split bool) {
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	rec := &recordingConn{Conn: client, split: split, wrote: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tlsClient := tls.Client(rec, &tls.Config{
			ServerName:         serverName,
			NextProtos:         alpn,
			InsecureSkipVerify: serverName == "",
		})
		_ = tlsClient.Handshake() // fails when the test closes the pipe
	}()

	res, replay, err := Detect(server, noDecisionWait)
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	if res.Protocol != TLS || res.TLS == nil {
		t.Fatalf("Detect = %+v, want TLS with a ClientHello", res)
	}
	if res.TLS.ServerName != serverName {
		t.Errorf("ServerName = %q, want %q", res.TLS.ServerName, serverName)
	}
	if !slices.Equal(res.TLS.ALPN, alpn) {
		t.Errorf("ALPN = %q, want %q", res.TLS.ALPN, alpn)
	}

	<-rec.wrote
	hello := rec.written()
	got := make([]byte, len(hello))
	if _, err := io.ReadFull(replay, got); err != nil {
		t.Fatalf("reading replayed ClientHello: %v", err)
	}
	if !bytes.Equal(got, hello) {
		t.Errorf("replayed %d bytes that differ from the %d-byte ClientHello sent", len(got), len(hello))
	}
	server.Close()
	<-done
}

func TestDetectTimeouts(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    Protocol
		wantErr error
	}{
		{"silent client is opaque", "", Opaque, nil},
		{"truncated h2 preface", "PRI * HTTP/2.0\r\n", Opaque, ErrTimeout},
		{"partial request line", "GET /index.ht", Opaque, ErrTimeout},
		{"partial TLS record header", "\x16\x03\x01", Opaque, ErrTimeout},
		{"partial ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", Opaque, ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, replay, err := detectOverPipe(t, []byte(tt.input), false, 50*time.Millisecond)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Detect(%q) error = %v, want %v", tt.input, err, tt.wantErr)
			}
			if err == nil && res.Protocol != tt.want {
				t.Errorf("Detect(%q) = %v, want %v", tt.input, res.Protocol, tt.want)
			}
			if got := replay(); got != tt.input {
				t.Errorf("replayed %q, want %q", got, tt.input)
			}
		})
	}
}

func TestDetectClearsDeadline(t *testing.T) {
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	_, conn, err := Detect(server, 20*time.Millisecond) // silent client
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond) // longer than the detection timeout
		client.Write([]byte("hello"))
	}()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatalf("read after detection: %v (deadline not cleared?)", err)
	}
}

func TestDetectEOFBeforeDecisionIsOpaque(t *testing.T) {
	for _, input := range []string{"", "GET /", "PRI * HTTP", "\x16\x03"} {
		res, conn, err := Detect(newBytesConn([]byte(input)), noDecisionWait)
		if err != nil || res.Protocol != Opaque {
			t.Errorf("Detect(%q then EOF) = %v, %v; want opaque, no error", input, res.Protocol, err)
		}
		if got, _ := io.ReadAll(conn); string(got) != input {
			t.Errorf("replayed %q, want %q", got, input)
		}
	}
}

func TestDetectRandomBytesReplayExactly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		input := make([]byte, 1+rng.IntN(3000))
		for j := range input {
			input[j] = byte(rng.Uint32())
		}
		_, conn, err := Detect(newBytesConn(input), noDecisionWait)
		if err != nil {
			t.Fatalf("input %d: %v", i, err)
		}
		if got, _ := io.ReadAll(conn); !bytes.Equal(got, input) {
			t.Fatalf("input %d: replay differs (%d bytes, want %d)", i, len(got), len(input))
		}
	}
}

func TestProtocolString(t *testing.T) {
	for p, want := range map[Protocol]string{Opaque: "opaque", HTTP1: "http/1", HTTP2: "http/2", TLS: "tls", 9: "Protocol(9)"} {
		if got := p.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(p), got, want)
		}
	}
}

// detectOverPipe runs Detect on one end of a net.Pipe while the other end
// writes input (one byte per Write if split) and then stays open, so that
// Detect must decide without an EOF. The returned function sends a marker,
// closes the client and returns what the detected conn replays before it.
func detectOverPipe(t *testing.T, input []byte, split bool, timeout time.Duration) (Result, func() string, error) {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	var writer sync.WaitGroup
	writer.Go(func() {
		chunk := len(input)
		if split {
			chunk = 1
		}
		for b := input; len(b) > 0; b = b[min(chunk, len(b)):] {
			if _, err := client.Write(b[:min(chunk, len(b))]); err != nil {
				return // Detect decided and stopped reading; the rest is read by replay
			}
		}
	})
	res, conn, err := Detect(server, timeout)
	replay := func() string {
		const marker = "<after detection>"
		go func() {
			writer.Wait()
			client.Write([]byte(marker))
			client.Close()
		}()
		got, _ := io.ReadAll(conn)
		s, ok := strings.CutSuffix(string(got), marker)
		if !ok {
			t.Errorf("conn did not read on after the replayed bytes: got %q", truncate(got, 64))
		}
		return s
	}
	return res, replay, err
}

// bytesConn is a net.Conn that reads the given bytes, then EOF.
type bytesConn struct {
	net.Conn // nil: only the methods below are used
	r        *bytes.Reader
}

func newBytesConn(b []byte) *bytesConn               { return &bytesConn{r: bytes.NewReader(b)} }
func (c *bytesConn) Read(p []byte) (int, error)      { return c.r.Read(p) }
func (c *bytesConn) SetReadDeadline(time.Time) error { return nil }

// recordingConn records what a TLS client writes, to compare with the replay.
type recordingConn struct {
	net.Conn
	mu    sync.Mutex
	buf   []byte
	split bool // write one byte at a time
	once  sync.Once
	wrote chan struct{} // closed after the first Write (the ClientHello)
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf = append(c.buf, p...)
	c.mu.Unlock()
	defer c.once.Do(func() { close(c.wrote) })
	if !c.split {
		return c.Conn.Write(p)
	}
	for i := range p {
		if _, err := c.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

func (c *recordingConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf)
}

func TestDetectOversizedClientHelloIsOpaque(t *testing.T) {
	// 100 ALPN names of 200 bytes: a ClientHello over one TLS record.
	var alpn []string
	for i := range 100 {
		alpn = append(alpn, strings.Repeat(string(rune('a'+i%26)), 200))
	}
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	go tls.Client(client, &tls.Config{ServerName: "big.example", NextProtos: alpn}).Handshake()

	res, conn, err := Detect(server, noDecisionWait)
	if err != nil || res.Protocol != Opaque {
		t.Fatalf("Detect = %v, %v; want opaque", res.Protocol, err)
	}
	head := make([]byte, maxClientHello)
	if _, err := io.ReadFull(conn, head); err != nil || head[0] != recordTypeHandshake {
		t.Errorf("replay starts %x, %v; want the ClientHello record", truncate(head, 6), err)
	}
}
