package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// http1Handler is the wire mesh's HTTP/1.1 application:
//   - /trailers reads the body (chunked), then answers chunked with the
//     trailers X-Body-Sha256 (of what it read) and X-Echo-Trailer (the
//     request's X-Req-Trailer trailer);
//   - /reject answers 417 without reading the body;
//   - /ws greets with "hello", then echoes whole WebSocket messages.
func http1Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/trailers", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sum := sha256.Sum256(body)
		w.Header().Set("Trailer", "X-Body-Sha256, X-Echo-Trailer")
		w.Header().Set("X-Transfer-Encoding-In", fmt.Sprint(r.TransferEncoding))
		for range 4 { // several chunks
			w.Write([]byte(strings.Repeat("z", 1000)))
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Body-Sha256", hex.EncodeToString(sum[:]))
		w.Header().Set("X-Echo-Trailer", r.Trailer.Get("X-Req-Trailer"))
	})
	mux.HandleFunc("/reject", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "not this body", http.StatusExpectationFailed)
	})
	mux.Handle("/ws", websocket.Handler(func(c *websocket.Conn) {
		if websocket.Message.Send(c, "hello") != nil {
			return
		}
		for {
			var msg []byte
			if err := websocket.Message.Receive(c, &msg); err != nil {
				return
			}
			if err := websocket.Message.Send(c, msg); err != nil {
				return
			}
		}
	}))
	return mux
}

// TestHTTP1TrailersContinueAndWebSocketThroughTheMesh: Go's HTTP/1.1
// client, on one kept-alive connection through the client's proxy and the
// server's proxy, sends a chunked body with a trailer and gets a chunked
// answer with trailers, and waits for 100 Continue before sending a body;
// an application that refuses an Expect: 100-continue upload is heard; a
// WebSocket carries messages the server sends first and 1 MiB echoes.
func TestHTTP1TrailersContinueAndWebSocketThroughTheMesh(t *testing.T) {
	w := getWire(t)
	base := "http://" + w.target(wirePortH1)
	var dials atomic.Int32
	tr := &http.Transport{DisableCompression: true, ExpectContinueTimeout: 20 * time.Second}
	dial := dialer(w.client)
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dial(ctx, network, addr)
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()

	payload := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	sum := sha256.Sum256(payload)
	trailerUpload := func(t *testing.T) {
		t.Helper()
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", base+"/trailers", pr)
		req.Trailer = http.Header{"X-Req-Trailer": nil}
		go func() {
			pw.Write(payload[:len(payload)/2])
			pw.Write(payload[len(payload)/2:])
			req.Trailer.Set("X-Req-Trailer", "set after the body")
			pw.Close()
		}()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || len(body) != 4000 {
			t.Errorf("answer %d with %d bytes, want 200 with 4000", resp.StatusCode, len(body))
		}
		if te := resp.Header.Get("X-Transfer-Encoding-In"); te != "[chunked]" {
			t.Errorf("the application read transfer encoding %s, want [chunked]", te)
		}
		if fmt.Sprint(resp.TransferEncoding) != "[chunked]" {
			t.Errorf("answer's transfer encoding %v, want [chunked]", resp.TransferEncoding)
		}
		if got := resp.Trailer.Get("X-Body-Sha256"); got != hex.EncodeToString(sum[:]) {
			t.Errorf("trailer X-Body-Sha256 %q, want %x (the chunked body intact)", got, sum)
		}
		if got := resp.Trailer.Get("X-Echo-Trailer"); got != "set after the body" {
			t.Errorf("trailer X-Echo-Trailer %q: the request's trailer did not reach the application", got)
		}
	}
	t.Run("chunked both ways with trailers", trailerUpload)

	t.Run("100-continue", func(t *testing.T) {
		var continued atomic.Bool
		trace := &httptrace.ClientTrace{Got100Continue: func() { continued.Store(true) }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", base+"/trailers", bytes.NewReader(payload))
		req.Header.Set("Expect", "100-continue")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if !continued.Load() {
			t.Error("no 100 Continue reached the client (it sent the body after waiting 20 s)")
		}
		if got := resp.Trailer.Get("X-Body-Sha256"); resp.StatusCode != 200 || got != hex.EncodeToString(sum[:]) {
			t.Errorf("answer %d, X-Body-Sha256 %q; want 200 and the body intact", resp.StatusCode, got)
		}
	})

	t.Run("keep-alive carried all of it", func(t *testing.T) {
		trailerUpload(t) // once more, on the same connection
		if d := dials.Load(); d != 1 {
			t.Errorf("the client dialled %d times for three uploads, want 1 (keep-alive)", d)
		}
	})

	t.Run("expectation refused by the application", func(t *testing.T) {
		var continued atomic.Bool
		trace := &httptrace.ClientTrace{Got100Continue: func() { continued.Store(true) }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", base+"/reject", bytes.NewReader(payload))
		req.Header.Set("Expect", "100-continue")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusExpectationFailed || string(body) != "not this body\n" {
			t.Errorf("answer %d %q, want the application's 417 \"not this body\"", resp.StatusCode, body)
		}
		t.Logf("100 Continue before the refusal: %v", continued.Load())
	})

	t.Run("WebSocket: server first, then 1 MiB echoes", func(t *testing.T) {
		addr := w.target(wirePortH1)
		cfg, err := websocket.NewConfig("ws://"+addr+"/ws", "http://"+addr+"/")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		raw, err := dialer(w.client)(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		raw.SetDeadline(time.Now().Add(30 * time.Second))
		ws, err := websocket.NewClient(cfg, raw)
		if err != nil {
			t.Fatalf("WebSocket handshake through the proxies: %v", err)
		}
		defer ws.Close()
		var hello string
		if err := websocket.Message.Receive(ws, &hello); err != nil || hello != "hello" {
			t.Fatalf("the server's first message: %q, %v", hello, err)
		}
		for i := range 5 {
			msg := bytes.Repeat([]byte{byte(i)}, 1<<20)
			if err := websocket.Message.Send(ws, msg); err != nil {
				t.Fatal(err)
			}
			var got []byte
			if err := websocket.Message.Receive(ws, &got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("echo %d: %d bytes differ from the 1 MiB sent", i, len(got))
			}
		}
	})
}

// TestCurlTrailersAndContinueThroughTheMesh: curl, a client that is not
// Go's, sends a chunked body with Expect: 100-continue through the mesh and
// sees the 100 Continue, the chunked answer and its trailers.
func TestCurlTrailersAndContinueThroughTheMesh(t *testing.T) {
	w := getWire(t)
	if _, err := os.Stat("/usr/bin/curl"); err != nil {
		t.Skip("curl not installed (scripts/setup.sh installs it)")
	}
	payload := bytes.Repeat([]byte("curl's body "), 100<<10)
	file := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// --expect100-timeout: curl would send the body anyway after 1 s.
	out, err := w.client.Command(ctx, "curl", "-sS", "--fail", "-v", "-o", "/dev/null", "-D", "-",
		"--expect100-timeout", "20", "-H", "Expect: 100-continue", "-H", "Transfer-Encoding: chunked",
		"--data-binary", "@"+file, "http://"+w.target(wirePortH1)+"/trailers").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	text := strings.ToLower(string(out))
	for _, want := range []string{
		"< http/1.1 100 continue",
		"transfer-encoding: chunked",
		"x-transfer-encoding-in: [chunked]",
		"x-body-sha256: " + hex.EncodeToString(sum[:]), // a trailer
	} {
		if !strings.Contains(text, want) {
			t.Errorf("curl's output lacks %q:\n%s", want, out)
		}
	}
}
