package proxyerror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func failing(err error) stack.Handler {
	return Layer(quiet)(stack.HandlerFunc(func(context.Context, *stack.Request) (*stack.Response, error) {
		return nil, err
	}))
}

func TestErrorsBecomeAnswers(t *testing.T) {
	dial := errors.New("endpoint 10.0.0.5:8080: dial tcp 10.0.0.5:8080: connect: connection refused")
	outbound := &stack.ConnInfo{Direction: "outbound"}
	meshedPeer := &stack.ConnInfo{Direction: "inbound", ClientID: "spiffe://test/ns/a/sa/b"}
	stranger := &stack.ConnInfo{Direction: "inbound"}
	for _, c := range []struct {
		name       string
		err        error
		conn       *stack.ConnInfo
		grpc       bool
		wantStatus int
		wantWhy    string // Skein-Proxy-Error; "" for absent
		wantGRPC   string // grpc-message
	}{
		{"dial, local app", dial, outbound, false, 502, dial.Error(), ""},
		{"dial, meshed peer", dial, meshedPeer, false, 502, dial.Error(), ""},
		{"dial, stranger", dial, stranger, false, 502, "", ""},
		{"no endpoints", fmt.Errorf("x: %w", stack.ErrNoEndpoints), outbound, false, 503, "x: destination has no endpoints", ""},
		{"all ejected", stack.ErrAllEjected, outbound, false, 503, "all endpoints ejected", ""},
		{"all ejected, grpc", stack.ErrAllEjected, outbound, true, 200, "all endpoints ejected", "all endpoints ejected"},
		{"refused", fmt.Errorf("y; %w", stack.ErrRefusedWithoutMTLS), stranger, false, 503, "", ""},
		{"timeout", context.DeadlineExceeded, outbound, false, 504, "context deadline exceeded", ""},
		{"grpc, local app", dial, outbound, true, 200, dial.Error(), dial.Error()},
		{"grpc, stranger", dial, stranger, true, 200, "", "Bad Gateway"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := &stack.Request{Method: "POST", Path: "/", Conn: c.conn, Body: stack.NoBody}
			if c.grpc {
				req.Header.Add("content-type", "application/grpc")
			}
			resp, err := failing(c.err).Serve(context.Background(), req)
			if err != nil {
				t.Fatalf("the layer returned %v, want an answer", err)
			}
			if resp.Status != c.wantStatus {
				t.Errorf("status %d, want %d", resp.Status, c.wantStatus)
			}
			if got := resp.Header.Get(Header); got != c.wantWhy {
				t.Errorf("%s %q, want %q", Header, got, c.wantWhy)
			}
			body, _ := io.ReadAll(resp.Body)
			if c.grpc {
				if resp.Header.Get("grpc-status") != "14" || resp.Header.Get("grpc-message") != c.wantGRPC || len(body) != 0 {
					t.Errorf("grpc-status %q grpc-message %q body %q, want a trailers-only 14 %q",
						resp.Header.Get("grpc-status"), resp.Header.Get("grpc-message"), body, c.wantGRPC)
				}
			} else if want := fmt.Sprintf("%s\n", statusText(c.wantStatus)); string(body) != want {
				t.Errorf("body %q, want %q", body, want)
			}
		})
	}
}

func statusText(code int) string {
	return map[int]string{502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}[code]
}

func TestAnAbandonedRequestIsNotAnswered(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := &stack.Request{Conn: &stack.ConnInfo{Direction: "outbound"}, Body: stack.NoBody}
	if resp, err := failing(context.Canceled).Serve(ctx, req); resp != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, %v; want no answer and context.Canceled", resp, err)
	}
}
