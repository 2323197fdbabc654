package h1

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"strings"
	"testing"
)

// chunkedReader hides its length so that Go's client sends it chunked.
type chunkedReader struct{ io.Reader }

func TestChunkedBodiesAndTrailersBothWays(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if len(r.TransferEncoding) != 1 || r.TransferEncoding[0] != "chunked" {
			t.Errorf("backend got Transfer-Encoding %v, want chunked", r.TransferEncoding)
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("backend reading body: %v", err)
		}
		w.Header().Set("Trailer", "X-Sum")
		w.WriteHeader(200)
		_, _ = w.Write(body)
		w.(http.Flusher).Flush()
		sum := sha256.Sum256(body)
		w.Header().Set("X-Sum", string(r.Trailer.Get("X-Up"))+":"+string(rune('0'+sum[0]%10)))
	})
	p := startProxy(t, Config{}, be.hostPort())
	hc := p.httpClient(t)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB
	req, _ := http.NewRequest("POST", "http://web.test/up", chunkedReader{bytes.NewReader(payload)})
	req.Trailer = http.Header{"X-Up": nil}
	req.Trailer.Set("X-Up", "up-trailer")
	// Trailers are read once the body is sent: set before, as Go's client wants.
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, resp)
	if got != string(payload) {
		t.Fatalf("echoed %d bytes, want %d", len(got), len(payload))
	}
	sum := sha256.Sum256(payload)
	if want := "up-trailer:" + string(rune('0'+sum[0]%10)); resp.Trailer.Get("X-Sum") != want {
		t.Errorf("response trailer X-Sum = %q, want %q (trailers: %v)", resp.Trailer.Get("X-Sum"), want, resp.Trailer)
	}
	if resp.ContentLength != -1 {
		t.Errorf("response Content-Length %d, want chunked", resp.ContentLength)
	}
}

func TestLargeContentLengthBodiesStream(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 1<<20 {
			t.Errorf("backend got Content-Length %d, want %d", r.ContentLength, 1<<20)
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("backend reading body: %v", err)
		}
		w.Header().Set("Content-Length", "1048576")
		_, _ = w.Write(body)
	})
	p := startProxy(t, Config{}, be.hostPort())
	hc := p.httpClient(t)
	payload := bytes.Repeat([]byte("x"), 1<<20)
	for i := range 2 {
		resp, err := hc.Post("http://web.test/", "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != string(payload) || resp.ContentLength != 1<<20 {
			t.Fatalf("round %d: %d bytes, Content-Length %d", i, len(got), resp.ContentLength)
		}
	}
	if n := be.conns.Load(); n != 1 {
		t.Errorf("backend saw %d connections, want 1 (kept alive after streamed bodies)", n)
	}
}

func TestNoBodyAnswers(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "hello")
		}
	})
	p := startProxy(t, Config{}, be.hostPort())
	hc := p.httpClient(t)
	for _, tc := range []struct {
		method, path string
		status       int
		cl           int64
	}{
		{"HEAD", "/", 200, 5},
		{"GET", "/204", 204, 0},
		{"GET", "/304", 304, -1},
		{"GET", "/", 200, 5},
	} {
		req, _ := http.NewRequest(tc.method, "http://web.test"+tc.path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		body := readAll(t, resp)
		wantBody := ""
		if tc.method == "GET" && tc.status == 200 {
			wantBody = "hello"
		}
		if resp.StatusCode != tc.status || body != wantBody {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, body, tc.status, wantBody)
		}
		if tc.method == "HEAD" && resp.ContentLength != tc.cl {
			t.Errorf("HEAD: Content-Length %d, want %d", resp.ContentLength, tc.cl)
		}
	}
	if n := p.accepts.Load(); n != 1 {
		t.Errorf("proxy accepted %d connections, want 1: bodiless answers keep the connection", n)
	}
}

func TestHopByHopFieldsDropped(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		for _, name := range []string{"X-Private", "Keep-Alive", "Proxy-Connection", "Te", "Upgrade"} {
			if v := r.Header.Get(name); v != "" {
				t.Errorf("backend got hop-by-hop %s: %q", name, v)
			}
		}
		if r.Header.Get("X-Kept") != "yes" {
			t.Errorf("backend lost X-Kept: %v", r.Header)
		}
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "no")
		_, _ = io.WriteString(w, "ok")
	})
	p := startProxy(t, Config{}, be.hostPort())
	conn := dialRaw(t, p.addr)
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: web.test\r\nConnection: keep-alive, X-Private\r\n"+
		"X-Private: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"+
		"Upgrade: h2c\r\nX-Kept: yes\r\n\r\n")
	resp := readResponse(t, conn, "GET")
	if resp.StatusCode != 200 || resp.Header.Get("X-Secret") != "" {
		t.Errorf("response %d with headers %v, want 200 without X-Secret", resp.StatusCode, resp.Header)
	}
	if strings.Contains(resp.Header.Get("Connection"), "X-Secret") {
		t.Errorf("response Connection %q names the upstream's field", resp.Header.Get("Connection"))
	}
}
