// Package tunnel is the layer that watches byte tunnels: a WebSocket
// upgrade (101) or an accepted CONNECT, whose bytes travel in the request
// and response bodies. It marks the request upgraded and closes a tunnel
// on both sides when no byte has moved either way for its idle timeout.
// The engines carry the bytes; this package only watches them.
package tunnel

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// Layer closes tunnels idle for idle; 0 never does.
func Layer(idle time.Duration) stack.Layer {
	return func(next stack.Handler) stack.Handler {
		return stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
			if !mayTunnel(req) {
				return next.Serve(ctx, req)
			}
			t := &watch{timeout: idle, down: req.Body}
			req.Body = &touchingBody{Body: req.Body, w: t}
			resp, err := next.Serve(ctx, req)
			if err != nil || !IsTunnel(req, resp) {
				return resp, err
			}
			req.Info.Upgraded = true
			if idle <= 0 {
				return resp, nil
			}
			t.start(resp.Body)
			resp.Body = &touchingBody{Body: resp.Body, w: t}
			return resp, nil
		})
	}
}

// mayTunnel reports whether req can become a tunnel.
func mayTunnel(req *stack.Request) bool {
	return req.Method == http.MethodConnect || req.IsUpgrade()
}

// IsTunnel reports whether resp turns req's exchange into a byte tunnel.
func IsTunnel(req *stack.Request, resp *stack.Response) bool {
	if resp.Status == http.StatusSwitchingProtocols {
		return true
	}
	return req.Method == http.MethodConnect && resp.Status >= 200 && resp.Status < 300
}

// watch closes both sides of one tunnel when no byte has been read from
// either for its timeout.
type watch struct {
	timeout time.Duration
	down    stack.Body // the client's bytes
	last    atomic.Int64

	mu          sync.Mutex
	up          stack.Body // the server's bytes; nil until the tunnel opens
	timer       *time.Timer
	closed      bool
	sidesClosed int
}

func (w *watch) touch() { w.last.Store(time.Now().UnixNano()) }

func (w *watch) start(up stack.Body) {
	w.touch()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.up = up
	w.timer = time.AfterFunc(w.timeout, w.check)
}

// check closes the tunnel if it has been idle for the timeout, else looks
// again when it would be.
func (w *watch) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	idle := time.Since(time.Unix(0, w.last.Load()))
	if idle < w.timeout {
		w.timer.Reset(w.timeout - idle)
		return
	}
	w.closed = true
	w.down.Close()
	w.up.Close()
}

// sideClosed ends the watch once both sides of the tunnel are closed: one
// side alone may be half-closed while the other still carries bytes.
func (w *watch) sideClosed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sidesClosed++; w.sidesClosed < 2 {
		return
	}
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// touchingBody notes every byte read from one side of the tunnel.
type touchingBody struct {
	stack.Body
	w      *watch
	closed atomic.Bool
}

func (b *touchingBody) Read(p []byte) (int, error) {
	n, err := b.Body.Read(p)
	if n > 0 {
		b.w.touch()
	}
	return n, err
}

func (b *touchingBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.w.sideClosed()
	}
	return b.Body.Close()
}
