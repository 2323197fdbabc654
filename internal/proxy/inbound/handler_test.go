package inbound

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/clientpool"
	"github.com/skeinmesh/skein/internal/proxy/meshtls"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// recordingClient answers every request itself, saying which engine got it
// and whether the downgrade header reached it; it never dials.
type recordingClient struct{ version string }

func (c *recordingClient) CloseIdle() bool { return false }
func (c *recordingClient) Close()          {}
func (c *recordingClient) Serve(_ context.Context, req *stack.Request) (*stack.Response, error) {
	h := stack.Header{{Name: "engine", Value: c.version}, {Name: "saw-orig-proto", Value: fmt.Sprint(req.Header.Has(meshtls.OrigProtoHeader))}}
	return &stack.Response{Status: 200, Header: h, Body: stack.NoBody}, nil
}

func recordingEngines() clientpool.Engines {
	return clientpool.Engines{
		HTTP1: func(clientpool.Dial) clientpool.Client { return &recordingClient{version: "h1"} },
		HTTP2: func(clientpool.Dial) clientpool.Client { return &recordingClient{version: "h2"} },
	}
}

func TestOnlyAMeshedPeerMayAskForHTTP1(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := New(false).Handler(ctx, recordingEngines())
	for _, c := range []struct {
		name       string
		clientID   string
		major      int
		origProto  string
		wantEngine string
	}{
		{"meshed peer asks for HTTP/1.1", "spiffe://test/ns/a/sa/b", 2, "HTTP/1.1", "h1"},
		{"plaintext client asks for HTTP/1.1", "", 2, "HTTP/1.1", "h2"},
		{"meshed peer, HTTP/2", "spiffe://test/ns/a/sa/b", 2, "", "h2"},
		{"plaintext HTTP/1.1", "", 1, "", "h1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := &stack.Request{Method: "GET", Path: "/", ProtoMajor: c.major, Body: stack.NoBody,
				Conn: &stack.ConnInfo{Direction: "inbound", ClientID: c.clientID, OrigDst: netip.MustParseAddrPort("10.0.0.1:8080")}}
			if c.origProto != "" {
				req.Header.Add(meshtls.OrigProtoHeader, c.origProto)
			}
			resp, err := h.Serve(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Header.Get("engine"); got != c.wantEngine {
				t.Errorf("sent with %s, want %s", got, c.wantEngine)
			}
			if resp.Header.Get("saw-orig-proto") != "false" {
				t.Errorf("%s reached the application", meshtls.OrigProtoHeader)
			}
		})
	}
}

// In TPROXY mode every client address gets Clients of its own; the number
// of addresses kept must not be the clients' to choose.
func TestSourcePoolsAreBounded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := New(true).Handler(ctx, recordingEngines()).(*toApp)
	send := func(client string) {
		req := &stack.Request{Method: "GET", ProtoMajor: 1, Body: stack.NoBody, Conn: &stack.ConnInfo{
			Client: netip.MustParseAddrPort(client), OrigDst: netip.MustParseAddrPort("10.0.0.1:8080")}}
		if _, err := a.Serve(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	send("[fd00::1]:40000")
	for i := range 3 * maxSourcePools {
		send(fmt.Sprintf("[fd00::1:%x]:40000", i+1))
	}
	if n := a.sources.Len(); n != maxSourcePools {
		t.Errorf("%d pools after %d client addresses, want %d", n, 3*maxSourcePools+1, maxSourcePools)
	}
}
