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
	"strings"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/httpproxy"
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
func send(t *testing.T, u *Upstream, authority string, origDst netip.AddrPort, body string) (string, *httpproxy.RequestInfo) {
	t.Helper()
	ri := &httpproxy.RequestInfo{}
	ctx := httpproxy.WithConnInfo(context.Background(), &httpproxy.ConnInfo{Direction: "outbound", OrigDst: origDst})
	ctx = httpproxy.WithRequestInfo(ctx, ri)
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+authority+"/", strings.NewReader(body))
	resp, err := u.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	return string(got), ri
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
	ctx := httpproxy.WithConnInfo(context.Background(), &httpproxy.ConnInfo{OrigDst: vip})
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+vip.String()+"/", nil)
	if _, err := u.RoundTrip(req); !errors.Is(err, httpproxy.ErrNoEndpoints) {
		t.Errorf("got %v, want an error wrapping ErrNoEndpoints", err)
	}
}
