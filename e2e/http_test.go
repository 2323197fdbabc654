package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

func TestHTTP1KeepAliveAndChunkedBodies(t *testing.T) {
	s := getShared(t)
	base := "http://" + addrPort(s.vip, portHTTP).String()
	var dials int
	tr := &http.Transport{DisableCompression: true}
	dial := dialer(s.client)
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials++
		return dial(ctx, network, addr)
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	seen := map[string]bool{}
	reused := 0
	for i := range 30 {
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if info.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", base+"/id", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[string(body)] = true
	}
	if dials != 1 || reused != 29 {
		t.Errorf("client dialled %d times and reused its connection %d times, want 1 and 29 (keep-alive)", dials, reused)
	}
	if len(seen) < 2 {
		t.Errorf("30 requests on one keep-alive connection reached %v, want more than one replica", seen)
	}

	// A chunked upload of unknown length, echoed back chunked.
	payload := make([]byte, 3<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	sum := sha256.Sum256(payload)
	req, _ := http.NewRequest("POST", base+"/echo", io.NopCloser(bytes.NewReader(payload)))
	req.ContentLength = -1
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Body-Sha256") != hex.EncodeToString(sum[:]) {
		t.Errorf("server saw a body with sha256 %s, want %x", resp.Header.Get("X-Body-Sha256"), sum)
	}
	if te := resp.Header.Get("X-Transfer-Encoding-In"); te != "[chunked]" {
		t.Errorf("server saw transfer encoding %s, want [chunked]", te)
	}
	if !equalBytes(got, payload) {
		t.Errorf("echoed body differs (%d bytes, want %d)", len(got), len(payload))
	}
	if fmt.Sprint(resp.TransferEncoding) != "[chunked]" {
		t.Errorf("response transfer encoding %v, want chunked", resp.TransferEncoding)
	}
}

func equalBytes(a, b []byte) bool { return bytes.Equal(a, b) }

func TestWebSocketEcho(t *testing.T) {
	s := getShared(t)
	addr := addrPort(s.vip, portHTTP).String()
	cfg, err := websocket.NewConfig("ws://"+addr+"/ws", "http://"+addr+"/")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := dialer(s.client)(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(cfg, raw)
	if err != nil {
		t.Fatalf("websocket handshake through the proxies: %v", err)
	}
	defer ws.Close()
	for i := range 100 {
		msg := fmt.Sprintf("message %d %s", i, strings.Repeat("x", i*100))
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatal(err)
		}
		if got != msg {
			t.Fatalf("echo %d: got %d bytes, want %d", i, len(got), len(msg))
		}
	}
}

func TestServerSpeaksFirstOnOpaquePort(t *testing.T) {
	s := getShared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialer(s.client)(ctx, "tcp", addrPort(s.vip, portBanner).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	// The client says nothing first: the greeting must arrive anyway, at
	// once, not after a protocol-detection timeout.
	start := time.Now()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("no greeting through the proxies: %v", err)
	}
	if !strings.HasPrefix(line, "220 srv-") {
		t.Fatalf("greeting %q, want 220 srv-N ready", line)
	}
	t.Logf("greeting after %v: %q", time.Since(start), line)
	fmt.Fprint(c, "HELO test\r\n")
	if line, _ = r.ReadString('\n'); line != "250 HELO test\r\n" {
		t.Errorf("reply %q, want 250 HELO test", line)
	}
	// Half-close: the server still answers QUIT after our side is done writing.
	fmt.Fprint(c, "QUIT\r\n")
	c.(interface{ CloseWrite() error }).CloseWrite()
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "221 bye\r\n" {
		t.Errorf("after QUIT and half-close got %q, %v; want 221 bye then EOF", rest, err)
	}
}
