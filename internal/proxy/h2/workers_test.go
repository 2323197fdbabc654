package h2

import (
	"bytes"
	"context"
	"net/http"
	"runtime"
	"sync"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// goroutineID is the running goroutine's number, from its stack header
// ("goroutine 42 [running]:").
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := bytes.Fields(buf)
	if len(f) < 2 {
		return ""
	}
	return string(f[1])
}

// TestHandlersRunOnKeptGoroutines: one request after another on a
// connection are served by a kept goroutine, not a new one each.
func TestHandlersRunOnKeptGoroutines(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	h := stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		mu.Lock()
		seen[goroutineID()]++
		mu.Unlock()
		return &stack.Response{Status: 200, Body: stack.NoBody}, nil
	})
	addr, _ := serveH2(t, h, Config{})
	tr := h2cTransport()
	defer tr.CloseIdleConnections()
	const requests = 50
	for range requests {
		resp, err := tr.RoundTrip(must(http.NewRequest("GET", "http://"+addr+"/", nil)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	// A worker not back at its wait when the next request comes leaves
	// that one to a new goroutine, so a few may be used; one per request
	// means none was kept.
	if len(seen) > requests/5 {
		t.Fatalf("%d requests ran on %d goroutines, want them kept: %v", requests, len(seen), seen)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
