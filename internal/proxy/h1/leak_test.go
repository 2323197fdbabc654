package h1

import (
	"bytes"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// TestNoGoroutineOutlivesItsConnection runs every kind of exchange through
// a proxy, closes everything, and checks that the goroutine count comes
// back to where it was.
func TestNoGoroutineOutlivesItsConnection(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("traffic", func(t *testing.T) {
		be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Upgrade") != "" {
				websocket.Handler(func(ws *websocket.Conn) { _, _ = io.Copy(ws, ws) }).ServeHTTP(w, r)
				return
			}
			_, _ = io.Copy(w, r.Body)
		})
		p := startProxy(t, Config{}, be.hostPort())
		hc := p.httpClient(t)
		for _, body := range []io.Reader{nil, bytes.NewReader(make([]byte, 100)), chunkedReader{bytes.NewReader(make([]byte, 200000))}} {
			req, _ := http.NewRequest("POST", "http://web.test/", body)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
		}
		ws, err := websocket.Dial("ws://"+p.addr+"/ws", "", "http://web.test/")
		if err != nil {
			t.Fatal(err)
		}
		_ = websocket.Message.Send(ws, "hi")
		var got string
		_ = websocket.Message.Receive(ws, &got)
		_ = ws.Close()
		c := dialRaw(t, p.addr)
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		readResponse(t, c, "GET")
		delete(rawReaders, c)
	})
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines left over after everything closed (%d before):\n%s", n-before, before, buf[:runtime.Stack(buf, true)])
	}
}
