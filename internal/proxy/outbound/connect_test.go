package outbound

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/clientpool"
	"github.com/skeinmesh/skein/internal/proxy/meshtls"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// recordingClient answers every request itself, saying which engine got
// it and what it carried; it never dials.
type recordingClient struct{ version string }

func (c *recordingClient) CloseIdle() bool { return true }
func (c *recordingClient) Close()          {}
func (c *recordingClient) Serve(_ context.Context, req *stack.Request) (*stack.Response, error) {
	io.Copy(io.Discard, req.Body)
	req.Body.Close()
	h := stack.Header{{Name: "engine", Value: c.version}, {Name: "orig-proto", Value: req.Header.Get(meshtls.OrigProtoHeader)}}
	return &stack.Response{Status: 200, Header: h, Body: stack.NoBody}, nil
}

func recordingEngines() clientpool.Engines {
	return clientpool.Engines{
		HTTP1: func(clientpool.Dial) clientpool.Client { return &recordingClient{version: "h1"} },
		HTTP2: func(clientpool.Dial) clientpool.Client { return &recordingClient{version: "h2"} },
	}
}

func TestTheMeshHopIsHTTP2ExceptForUpgrades(t *testing.T) {
	const meshedName, plainName = "meshed.test.svc.cluster.local:80", "plain.test.svc.cluster.local:80"
	const id = "spiffe://cluster.local/ns/test/sa/meshed"
	r := staticResolver{
		meshedName: {{Addr: netip.MustParseAddrPort("10.0.0.1:80"), Identity: id}},
		plainName:  {{Addr: netip.MustParseAddrPort("10.0.0.2:80")}},
	}
	u := newMeshedUpstream(t, r, 0)
	h := stack.Build(u.Connect(recordingEngines()), u.Resolve, u.Balance)
	for _, c := range []struct {
		name          string
		authority     string
		major         int
		upgrade       bool
		wantEngine    string
		wantOrigProto string
		wantServerID  string
	}{
		{"HTTP/1 to a meshed endpoint", meshedName, 1, false, "h2", "HTTP/1.1", id},
		{"HTTP/2 to a meshed endpoint", meshedName, 2, false, "h2", "", id},
		{"WebSocket to a meshed endpoint", meshedName, 1, true, "h1", "", id},
		{"HTTP/1 to a plain endpoint", plainName, 1, false, "h1", "", ""},
		{"HTTP/2 to a plain endpoint", plainName, 2, false, "h2", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := &stack.Request{Method: "GET", Authority: c.authority, Path: "/", ProtoMajor: c.major,
				Conn: &stack.ConnInfo{Direction: "outbound", OrigDst: netip.MustParseAddrPort("198.19.0.1:80")}, Body: stack.NoBody}
			if c.upgrade {
				req.Header.Add("upgrade", "websocket")
			}
			resp, err := h.Serve(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("engine"); got != c.wantEngine {
				t.Errorf("sent with %s, want %s", got, c.wantEngine)
			}
			if got := resp.Header.Get("orig-proto"); got != c.wantOrigProto {
				t.Errorf("%s %q, want %q", meshtls.OrigProtoHeader, got, c.wantOrigProto)
			}
			if req.Info.ServerID != c.wantServerID {
				t.Errorf("server_id %q, want %q", req.Info.ServerID, c.wantServerID)
			}
		})
	}
}

// A request whose body the engine started to send is not sent again, even
// when the engine says nothing reached the server (an HTTP/2 stream
// refused after its DATA went out).
func TestABodyOnceReadIsNotResent(t *testing.T) {
	vip := netip.MustParseAddrPort("198.19.0.1:80")
	u := newUpstream(t, staticResolver{vip.String(): {{Addr: netip.MustParseAddrPort("10.0.0.1:80")}, {Addr: netip.MustParseAddrPort("10.0.0.2:80")}}})
	calls := 0
	refusing := stack.HandlerFunc(func(_ context.Context, req *stack.Request) (*stack.Response, error) {
		calls++
		req.Body.Read(make([]byte, 1))
		req.Body.Close()
		return nil, stack.NotSent(errors.New("stream refused"))
	})
	h := stack.Build(refusing, u.Resolve, u.Balance)
	req := &stack.Request{Method: "POST", Authority: vip.String(), ProtoMajor: 2, Conn: &stack.ConnInfo{OrigDst: vip},
		Body: stack.BytesBody([]byte("payload"), nil)}
	if _, err := h.Serve(context.Background(), req); !stack.IsNotSent(err) {
		t.Fatalf("got %v, want the engine's error", err)
	}
	if calls != 1 {
		t.Errorf("the request was sent %d times, want 1", calls)
	}
}

// A body the engine closed unread (its connection failed) is still whole
// for the next endpoint, and is closed once the request is settled.
func TestAnUnreadBodyIsResentAndClosedAtTheEnd(t *testing.T) {
	vip := netip.MustParseAddrPort("198.19.0.1:80")
	u := newUpstream(t, staticResolver{vip.String(): {{Addr: netip.MustParseAddrPort("10.0.0.1:80")}, {Addr: netip.MustParseAddrPort("10.0.0.2:80")}}})
	calls := 0
	var got []byte
	flaky := stack.HandlerFunc(func(_ context.Context, req *stack.Request) (*stack.Response, error) {
		calls++
		if calls == 1 {
			req.Body.Close()
			return nil, stack.NotSent(errors.New("connection refused"))
		}
		got, _ = io.ReadAll(req.Body)
		req.Body.Close()
		return &stack.Response{Status: 204, Body: stack.NoBody}, nil
	})
	body := &closeCounter{Body: stack.BytesBody([]byte("payload"), nil)}
	req := &stack.Request{Method: "POST", Authority: vip.String(), ProtoMajor: 2, Conn: &stack.ConnInfo{OrigDst: vip}, Body: body}
	resp, err := stack.Build(flaky, u.Resolve, u.Balance).Serve(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if calls != 2 || string(got) != "payload" {
		t.Errorf("%d attempts, the second read %q; want 2 and the whole body", calls, got)
	}
	if body.closed != 1 {
		t.Errorf("the request body was closed %d times, want 1 (by the attempt that sent it)", body.closed)
	}
}

type closeCounter struct {
	stack.Body
	closed int
}

func (b *closeCounter) Close() error { b.closed++; return b.Body.Close() }

// An answer that ends with its headers (gRPC trailers-only) stays
// stack.NoBody through the balance layer, so the engine can send it as
// one HEADERS frame with END_STREAM: grpc-go fails a call whose status
// comes in headers followed by an empty DATA frame.
func TestATrailersOnlyAnswerKeepsNoBody(t *testing.T) {
	vip := netip.MustParseAddrPort("198.19.0.1:80")
	u := newUpstream(t, staticResolver{vip.String(): {{Addr: netip.MustParseAddrPort("10.0.0.1:80")}}})
	end := stack.HandlerFunc(func(context.Context, *stack.Request) (*stack.Response, error) {
		h := stack.Header{{Name: "content-type", Value: "application/grpc"}, {Name: "grpc-status", Value: "5"}}
		return &stack.Response{Status: 200, Header: h, Body: stack.NoBody}, nil
	})
	req := &stack.Request{Method: "POST", Authority: vip.String(), ProtoMajor: 2, Conn: &stack.ConnInfo{OrigDst: vip}, Body: stack.NoBody}
	resp, err := stack.Build(end, u.Resolve, u.Balance).Serve(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Body != stack.NoBody {
		t.Errorf("the answer's body is %T, want stack.NoBody", resp.Body)
	}
}

// An engine that splices the request body (stack.Unwrapper) takes it by
// unwrapping it: a refusal after that is not resent.
func TestASplicedBodyOnceStartedIsNotResent(t *testing.T) {
	vip := netip.MustParseAddrPort("198.19.0.1:80")
	u := newUpstream(t, staticResolver{vip.String(): {{Addr: netip.MustParseAddrPort("10.0.0.1:80")}, {Addr: netip.MustParseAddrPort("10.0.0.2:80")}}})
	calls := 0
	splicing := stack.HandlerFunc(func(_ context.Context, req *stack.Request) (*stack.Response, error) {
		calls++
		w, ok := req.Body.(stack.Unwrapper)
		if !ok {
			t.Fatalf("the request body is %T, want a stack.Unwrapper", req.Body)
		}
		w.Unwrap().Read(make([]byte, 1))
		return nil, stack.NotSent(errors.New("stream refused"))
	})
	req := &stack.Request{Method: "POST", Authority: vip.String(), ProtoMajor: 2, Conn: &stack.ConnInfo{OrigDst: vip},
		Body: stack.BytesBody([]byte("payload"), nil)}
	if _, err := stack.Build(splicing, u.Resolve, u.Balance).Serve(context.Background(), req); err == nil {
		t.Fatal("want the engine's error")
	}
	if calls != 1 {
		t.Errorf("the request was sent %d times, want 1", calls)
	}
}

// An endpoint whose identity is no SPIFFE ID is never called: each request
// to it fails with an error naming the endpoint and the identity.
func TestAnEndpointWithABadIdentityIsRefused(t *testing.T) {
	const name = "meshed.test.svc.cluster.local:80"
	r := staticResolver{name: {{Addr: netip.MustParseAddrPort("10.0.0.1:80"), Identity: "not a spiffe id"}}}
	u := newMeshedUpstream(t, r, 0)
	h := stack.Build(u.Connect(recordingEngines()), u.Resolve, u.Balance)
	for range 2 { // the second request finds the pooled Client
		req := &stack.Request{Method: "GET", Authority: name, Path: "/", ProtoMajor: 1,
			Conn: &stack.ConnInfo{Direction: "outbound", OrigDst: netip.MustParseAddrPort("198.19.0.1:80")}, Body: stack.NoBody}
		resp, err := h.Serve(context.Background(), req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("a request to an endpoint with a bad identity got %d", resp.Status)
		}
		if !strings.Contains(err.Error(), `10.0.0.1:80 has a bad identity "not a spiffe id"`) {
			t.Errorf("error %q does not name the endpoint and its identity", err)
		}
	}
}
