package timeout

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/routes"
)

// serveTimed sends one request with rule's timeouts through the layer to a
// terminal that answers body at once, and returns the context the
// terminal was given and the answer.
func serveTimed(t *testing.T, ctx context.Context, rule *routes.Rule, body stack.Body) (context.Context, *stack.Response) {
	t.Helper()
	var below context.Context
	end := stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		below = ctx
		return &stack.Response{Status: 200, Body: body}, nil
	})
	req := &stack.Request{Method: "GET", Path: "/", Body: stack.NoBody, Conn: &stack.ConnInfo{Direction: "outbound"}}
	req.Info.Rule = rule
	resp, err := Layer(nil)(end).Serve(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return below, resp
}

// An exchange that ended in time leaves the context below uncancelled: an
// engine still finishing with its connection (an HTTP/1 request body's last
// write) must not take the request for abandoned and close it.
func TestAnExchangeInTimeDoesNotCancelTheRequestBelow(t *testing.T) {
	rule := &routes.Rule{Timeouts: routes.Timeouts{Request: time.Hour, Idle: time.Hour}}
	for _, body := range []stack.Body{stack.NoBody, stack.BytesBody([]byte("hello"), nil)} {
		below, resp := serveTimed(t, context.Background(), rule, body)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if below.Err() != nil {
			t.Errorf("the request below was cancelled (%v) after its exchange ended in time", below.Err())
		}
	}
}

// Until the exchange ends, the request's own end reaches the request below.
func TestTheClientsCancelReachesTheRequestBelow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	below, resp := serveTimed(t, ctx, &routes.Rule{Timeouts: routes.Timeouts{Request: time.Hour}}, stack.BytesBody([]byte("x"), nil))
	cancel()
	select {
	case <-below.Done():
	case <-time.After(5 * time.Second):
		t.Error("the client's cancel did not reach the request below")
	}
	resp.Body.Close()
}

func TestTheRequestBelowKnowsTheDeadline(t *testing.T) {
	start := time.Now()
	below, resp := serveTimed(t, context.Background(), &routes.Rule{Timeouts: routes.Timeouts{Request: time.Hour, BackendRequest: time.Minute}}, stack.NoBody)
	resp.Body.Close()
	deadline, ok := below.Deadline()
	if !ok || deadline.Before(start.Add(time.Minute)) || deadline.After(time.Now().Add(time.Minute)) {
		t.Errorf("deadline below %v (%v), want a minute from the start", deadline, ok)
	}
}
