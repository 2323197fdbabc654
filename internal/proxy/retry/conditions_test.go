package retry

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/routes"
)

func TestWhichRequestsMayBeRetried(t *testing.T) {
	grpc := stack.Header{{Name: "content-type", Value: "application/grpc"}}
	http5xx := &routes.Retry{HTTP: []routes.StatusRange{{Min: 500, Max: 599}}}
	grpcCodes := &routes.Retry{GRPC: []int{14}}
	for _, c := range []struct {
		name   string
		req    stack.Request
		retry  *routes.Retry
		expect bool
	}{
		{"GET", stack.Request{Method: "GET"}, http5xx, true},
		{"PUT", stack.Request{Method: "PUT"}, http5xx, true},
		{"DELETE", stack.Request{Method: "DELETE"}, http5xx, true},
		{"POST", stack.Request{Method: "POST"}, http5xx, false},
		{"PATCH", stack.Request{Method: "PATCH"}, http5xx, false},
		{"POST allowed", stack.Request{Method: "POST"}, &routes.Retry{HTTP: http5xx.HTTP, NonIdempotent: true}, true},
		{"gRPC with codes", stack.Request{Method: "POST", Header: grpc}, grpcCodes, true},
		{"gRPC with HTTP conditions only", stack.Request{Method: "POST", Header: grpc}, http5xx, false},
		{"POST with gRPC codes but not gRPC", stack.Request{Method: "POST"}, grpcCodes, false},
		{"no conditions", stack.Request{Method: "GET"}, &routes.Retry{Limit: 3}, false},
		{"no retry", stack.Request{Method: "GET"}, nil, false},
		{"CONNECT", stack.Request{Method: "CONNECT"}, &routes.Retry{HTTP: http5xx.HTTP, NonIdempotent: true}, false},
		{"upgrade", stack.Request{Method: "GET", ProtoMajor: 1, Header: stack.Header{{Name: "upgrade", Value: "websocket"}}}, http5xx, false},
	} {
		if got := mayRetry(&c.req, c.retry); got != c.expect {
			t.Errorf("%s: mayRetry %v, want %v", c.name, got, c.expect)
		}
	}
}

func TestRetryableStatuses(t *testing.T) {
	gateway := &routes.Retry{GatewayError: true}
	ranges := &routes.Retry{HTTP: []routes.StatusRange{{Min: 429, Max: 429}, {Min: 500, Max: 501}}}
	for _, c := range []struct {
		r      *routes.Retry
		status int
		expect bool
	}{
		{gateway, 502, true}, {gateway, 503, true}, {gateway, 504, true}, {gateway, 500, false}, {gateway, 200, false},
		{ranges, 429, true}, {ranges, 500, true}, {ranges, 501, true}, {ranges, 502, false}, {ranges, 404, false},
	} {
		if got := retryableStatus(c.r, c.status); got != c.expect {
			t.Errorf("%+v status %d: %v, want %v", c.r, c.status, got, c.expect)
		}
	}
	codes := &routes.Retry{GRPC: []int{4, 14}}
	for status, expect := range map[string]bool{"14": true, "4": true, "0": false, "13": false, "": false, "x": false} {
		if got := retryableGRPC(codes, status); got != expect {
			t.Errorf("grpc-status %q: %v, want %v", status, got, expect)
		}
	}
}

// The request's own end stops the back-off: a timeout above answers at
// its deadline, not after the wait.
func TestBackoffEndsWithTheRequest(t *testing.T) {
	calls := 0
	next := stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		calls++
		return &stack.Response{Status: 503, Body: stack.NoBody}, nil
	})
	policy := &routes.Policy{Service: "test/echo", Port: 80,
		Defaults: routes.Rule{Retry: &routes.Retry{GatewayError: true, BackoffBase: time.Hour, BackoffMax: time.Hour}}}
	h := Layer(NewBudgets(0, nil), nil, slog.New(slog.DiscardHandler))(next)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req := &stack.Request{Method: "GET", Body: stack.NoBody, Conn: &stack.ConnInfo{},
		Info: stack.RequestInfo{Policy: policy, Rule: &policy.Defaults}}
	_, err := h.Serve(ctx, req)
	if !errors.Is(err, context.DeadlineExceeded) || calls != 1 {
		t.Fatalf("Serve: %v after %d attempts, want the request's deadline after 1", err, calls)
	}
}
