package tunnel

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// pipeBody is one side of a tunnel: what the test writes into it is read,
// and Close ends it.
type pipeBody struct {
	r      *io.PipeReader
	w      *io.PipeWriter
	closed chan struct{}
}

func newPipeBody() *pipeBody {
	r, w := io.Pipe()
	return &pipeBody{r: r, w: w, closed: make(chan struct{})}
}

func (b *pipeBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *pipeBody) Trailers() stack.Header     { return nil }
func (b *pipeBody) Close() error {
	select {
	case <-b.closed:
	default:
		close(b.closed)
		b.r.Close()
	}
	return nil
}

func TestIdleTunnelsAreClosedOnBothSides(t *testing.T) {
	for _, c := range []struct {
		name   string
		method string
		header stack.Header
		status int
	}{
		{"connect", "CONNECT", nil, 200},
		{"upgrade", "GET", stack.Header{{Name: "upgrade", Value: "websocket"}}, 101},
	} {
		t.Run(c.name, func(t *testing.T) {
			down, up := newPipeBody(), newPipeBody()
			server := stack.HandlerFunc(func(_ context.Context, req *stack.Request) (*stack.Response, error) {
				go io.Copy(io.Discard, req.Body) // the client engine sending the client's bytes
				return &stack.Response{Status: c.status, Body: up}, nil
			})
			const idle = 400 * time.Millisecond
			req := &stack.Request{Method: c.method, ProtoMajor: 1, Header: c.header, Body: down, Conn: &stack.ConnInfo{}}
			resp, err := Layer(idle)(server).Serve(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if !req.Info.Upgraded {
				t.Error("the request is not marked upgraded")
			}
			go io.Copy(io.Discard, resp.Body) // the server engine sending the server's bytes
			// Traffic for three idle timeouts, either way, keeps the tunnel open.
			for end := time.Now().Add(3 * idle); time.Now().Before(end); time.Sleep(idle / 10) {
				w := down.w
				if time.Now().UnixNano()%2 == 0 {
					w = up.w
				}
				if _, err := w.Write([]byte{'x'}); err != nil {
					t.Fatalf("busy tunnel broke: %v", err)
				}
			}
			// Silence closes both sides.
			for name, b := range map[string]*pipeBody{"client": down, "server": up} {
				select {
				case <-b.closed:
				case <-time.After(5 * time.Second):
					t.Errorf("idle tunnel: the %s side is still open", name)
				}
			}
		})
	}
}

func TestAnswersThatAreNotTunnelsAreLeftAlone(t *testing.T) {
	body := stack.BytesBody([]byte("no"), nil)
	server := stack.HandlerFunc(func(_ context.Context, req *stack.Request) (*stack.Response, error) {
		return &stack.Response{Status: 407, Body: body}, nil
	})
	req := &stack.Request{Method: "CONNECT", ProtoMajor: 1, Body: stack.NoBody, Conn: &stack.ConnInfo{}}
	resp, _ := Layer(time.Millisecond)(server).Serve(context.Background(), req)
	if resp.Body != body || req.Info.Upgraded {
		t.Error("a refused CONNECT was treated as a tunnel")
	}
}
