package outbound

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/rawio"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// staticResolver answers from a fixed map; unknown keys do not exist.
type staticResolver map[string][]discovery.Endpoint

func (r staticResolver) Watch(_ context.Context, dst string, update func(discovery.EndpointSet)) error {
	eps, ok := r[dst]
	update(discovery.EndpointSet{Exists: ok, Endpoints: eps})
	return nil
}

// backend is a loopback HTTP server that answers with its name and the
// request body.
func backend(t *testing.T, name string) netip.AddrPort {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, name+":"+string(body))
	}))
	t.Cleanup(srv.Close)
	return netip.MustParseAddrPort(srv.Listener.Addr().String())
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return addr
}

func newUpstream(t *testing.T, r discovery.Resolver) *Upstream {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return New(ctx, r, balance.DefaultOptions(), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// send makes a POST as if it arrived on a connection redirected from origDst.
func send(t *testing.T, u *Upstream, authority string, origDst netip.AddrPort, body string) (string, *stack.RequestInfo) {
	t.Helper()
	req := &stack.Request{Method: "POST", Scheme: "http", Authority: authority, Path: "/", ProtoMajor: 1,
		Conn: &stack.ConnInfo{Direction: "outbound", OrigDst: origDst}, Body: stack.BytesBody([]byte(body), nil)}
	req.Header.Add("content-length", strconv.Itoa(len(body)))
	resp, err := outboundStack(u).Serve(context.Background(), req)
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	return string(got), &req.Info
}

// outboundStack is the outbound stack's part that this package provides:
// resolve, balance, connect (with test engines).
func outboundStack(u *Upstream) stack.Handler {
	return stack.Build(u.Connect(testEngines()), u.Resolve, u.Balance)
}

// get sends a GET as if it arrived on a connection redirected from origDst.
func get(u *Upstream, authority string, origDst netip.AddrPort) (*stack.Response, error) {
	req := &stack.Request{Method: "GET", Scheme: "http", Authority: authority, Path: "/", ProtoMajor: 1,
		Conn: &stack.ConnInfo{Direction: "outbound", OrigDst: origDst}, Body: stack.NoBody}
	return outboundStack(u).Serve(context.Background(), req)
}

func TestConnectFailureIsRetriedOnAnotherEndpoint(t *testing.T) {
	live := backend(t, "live")
	dead := deadAddr(t)
	vip := netip.MustParseAddrPort("198.19.0.1:80")
	u := newUpstream(t, staticResolver{vip.String(): {{Addr: dead}, {Addr: live}}})
	for range 20 {
		got, ri := send(t, u, vip.String(), vip, "payload")
		if got != "live:payload" {
			t.Fatalf("answer %q, want live:payload (body intact after a retry)", got)
		}
		if ri.Endpoint.Addr != live {
			t.Errorf("request info names endpoint %s, want %s", ri.Endpoint.Addr, live)
		}
	}
}

func TestUnknownDestinationGoesToTheOriginalDestination(t *testing.T) {
	direct := backend(t, "direct")
	u := newUpstream(t, staticResolver{})
	got, _ := send(t, u, "unknown.example:80", direct, "x")
	if got != "direct:x" {
		t.Errorf("answer %q, want direct:x", got)
	}
}

func TestAuthorityIsResolvedBeforeTheAddress(t *testing.T) {
	byName := backend(t, "by-name")
	byAddr := backend(t, "by-addr")
	vip := netip.MustParseAddrPort("198.19.0.1:80")
	u := newUpstream(t, staticResolver{
		"web.test.svc.cluster.local:80": {{Addr: byName}},
		vip.String():                    {{Addr: byAddr}},
	})
	if got, _ := send(t, u, "web.test.svc.cluster.local", vip, "a"); got != "by-name:a" {
		t.Errorf("Host without port: answer %q, want by-name:a (port taken from the original destination)", got)
	}
	if got, _ := send(t, u, "other.example:80", vip, "b"); got != "by-addr:b" {
		t.Errorf("unknown Host: answer %q, want by-addr:b", got)
	}
}

func TestKnownDestinationWithoutEndpointsFails(t *testing.T) {
	vip := netip.MustParseAddrPort("198.19.0.1:80")
	u := newUpstream(t, staticResolver{vip.String(): nil})
	if _, err := get(u, vip.String(), vip); !errors.Is(err, stack.ErrNoEndpoints) {
		t.Errorf("got %v, want an error wrapping ErrNoEndpoints", err)
	}
}

// An opaque connection is a request path too: its TCP connection is read
// and written raw, so that its system calls leave Go's sysmon asleep (see
// package rawio; with them made the ordinary way, the relay cost 60-100%
// more CPU per exchange in skein-bench).
func TestOpaqueConnectionsAreRaw(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("raw I/O is Linux only")
	}
	direct := backend(t, "direct")
	known := backend(t, "known")
	vip := netip.MustParseAddrPort("198.19.0.1:80")
	u := newUpstream(t, staticResolver{vip.String(): {{Addr: known}}})
	for _, c := range []struct {
		name string
		dst  netip.AddrPort
	}{{"unknown destination", direct}, {"balanced destination", vip}} {
		conn, _, err := u.DialDestination(context.Background(), c.dst)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		inner := conn
		if tc, ok := conn.(*trackedConn); ok {
			inner = tc.Conn
		}
		if _, ok := inner.(*rawio.Conn); !ok {
			t.Errorf("%s: connection is a %T, want *rawio.Conn", c.name, inner)
		}
		conn.Close()
	}
}
