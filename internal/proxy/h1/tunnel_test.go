package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

func TestWebSocketThroughTheProxy(t *testing.T) {
	be := startBackend(t, websocket.Handler(func(ws *websocket.Conn) {
		_, _ = io.Copy(ws, ws)
	}).ServeHTTP)
	p := startProxy(t, Config{}, be.hostPort())
	ws, err := websocket.Dial("ws://"+p.addr+"/echo", "", "http://web.test/")
	if err != nil {
		t.Fatalf("websocket handshake through the proxy: %v", err)
	}
	defer func() { _ = ws.Close() }()
	for _, msg := range []string{"hello", strings.Repeat("big", 50000), "bye"} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		// The echo server writes what each read gave: a big message may
		// come back in several frames.
		var got string
		for len(got) < len(msg) {
			var part string
			if err := websocket.Message.Receive(ws, &part); err != nil {
				t.Fatal(err)
			}
			got += part
		}
		if got != msg {
			t.Fatalf("echo of %d bytes came back as %d bytes", len(msg), len(got))
		}
	}
}

// connectUpstream answers CONNECT with 200 and then echoes, upper-cased,
// until the client half-closes; then it says "bye" and closes.
// For half.test:1 it speaks first, half-closes, and sends what it then
// hears on heard.
func connectUpstream(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	heard = make(chan string, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err == nil && req.Host == "half.test:1" {
					// Speaks first and half-closes; then listens.
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nfirst words")
					_ = c.(*net.TCPConn).CloseWrite()
					data, _ := io.ReadAll(br)
					heard <- string(data)
					return
				}
				if err != nil || req.Method != "CONNECT" || req.Host != "db.test:5432" {
					_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 Connection Established\r\n\r\n")
				data, _ := io.ReadAll(br)
				_, _ = io.WriteString(c, strings.ToUpper(string(data))+"bye")
			}()
		}
	}()
	return ln.Addr().String()
}

func TestConnectTunnelHalfClosesBothWays(t *testing.T) {
	p := startProxy(t, Config{}, connectUpstream(t))
	c := dialRaw(t, p.addr)
	_, _ = io.WriteString(c, "CONNECT db.test:5432 HTTP/1.1\r\nHost: db.test:5432\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT answer: %v %v", resp, err)
	}
	_, _ = io.WriteString(c, "select 1;")
	_ = c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("reading the tunnel: %v", err)
	}
	if string(rest) != "SELECT 1;bye" {
		t.Errorf("tunnel gave %q, want %q", rest, "SELECT 1;bye")
	}
}

var heard chan string

func TestConnectTunnelUpstreamHalfCloseFirst(t *testing.T) {
	p := startProxy(t, Config{}, connectUpstream(t))
	c := dialRaw(t, p.addr)
	_, _ = io.WriteString(c, "CONNECT half.test:1 HTTP/1.1\r\nHost: half.test:1\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT answer: %v %v", resp, err)
	}
	// The upstream's half-close reaches the client while it can still write.
	got, err := io.ReadAll(br)
	if err != nil || string(got) != "first words" {
		t.Fatalf("read %q (%v) before EOF, want the upstream's words and its half-close", got, err)
	}
	_, _ = io.WriteString(c, "late reply")
	_ = c.(*net.TCPConn).CloseWrite()
	if h := <-heard; h != "late reply" {
		t.Errorf("upstream heard %q after its half-close, want %q", h, "late reply")
	}
}

func TestConnectRefusedIsAnAnswer(t *testing.T) {
	p := startProxy(t, Config{}, connectUpstream(t))
	c := dialRaw(t, p.addr)
	_, _ = io.WriteString(c, "CONNECT other.test:1 HTTP/1.1\r\nHost: other.test:1\r\n\r\n")
	resp := readResponse(t, c, "CONNECT")
	if resp.StatusCode != 400 {
		t.Errorf("refused CONNECT answered %d, want the upstream's 400", resp.StatusCode)
	}
}

func TestIdleTunnelIsClosed(t *testing.T) {
	p := startProxy(t, Config{TunnelIdleTimeout: 200 * time.Millisecond}, connectUpstream(t))
	c := dialRaw(t, p.addr)
	_, _ = io.WriteString(c, "CONNECT db.test:5432 HTTP/1.1\r\nHost: db.test:5432\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT answer: %v %v", resp, err)
	}
	// Some traffic, then silence: the proxy closes both sides.
	_, _ = io.WriteString(c, "ping")
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	rest, err := io.ReadAll(br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the idle tunnel was not closed")
	}
	if string(rest) != "" && string(rest) != "PINGbye" {
		t.Errorf("tunnel gave %q", rest)
	}
}

func TestShutdownWaitsForTunnelsThenCuts(t *testing.T) {
	p := startProxy(t, Config{}, connectUpstream(t))
	c := dialRaw(t, p.addr)
	_, _ = io.WriteString(c, "CONNECT db.test:5432 HTTP/1.1\r\nHost: db.test:5432\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT answer: %v %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with an open tunnel: %v, want it to wait and then cut", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.ReadAll(br); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Error("tunnel still open after the shutdown grace")
		}
	}
}
