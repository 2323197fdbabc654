package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// noMeshTLS stands in for the proxy's certificate: resolve only needs to
// know that the proxy has an identity.
type noMeshTLS struct{}

func (noMeshTLS) ClientTLS(spiffeid.ID, []string) *tls.Config { return &tls.Config{} }

// heldResolver answers a destination only when the test says so; until
// then, like a controller that cannot be reached, it says nothing.
type heldResolver struct {
	mu      sync.Mutex
	updates map[string]func(discovery.EndpointSet)
}

func (r *heldResolver) Watch(_ context.Context, dst string, update func(discovery.EndpointSet)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.updates == nil {
		r.updates = map[string]func(discovery.EndpointSet){}
	}
	r.updates[dst] = update
	return nil
}

func (r *heldResolver) watching(dst string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.updates[dst] != nil
}

func (r *heldResolver) answer(t *testing.T, dst string, set discovery.EndpointSet) {
	t.Helper()
	r.mu.Lock()
	update := r.updates[dst]
	r.mu.Unlock()
	if update == nil {
		t.Fatalf("%s is not watched", dst)
	}
	update(set)
}

// countingBackend is a loopback HTTP server that counts the requests it got.
func countingBackend(t *testing.T) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.WriteString(w, "plaintext reached the server")
	}))
	t.Cleanup(srv.Close)
	return netip.MustParseAddrPort(srv.Listener.Addr().String()), &n
}

func newMeshedUpstream(t *testing.T, r discovery.Resolver, waitFirst time.Duration) *Upstream {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	u := New(ctx, r, balance.DefaultOptions(), noMeshTLS{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	u.dests.waitFirst = waitFirst
	return u
}

func roundTrip(u *Upstream, authority string, origDst netip.AddrPort) (*stack.Response, error) {
	return get(u, authority, origDst)
}

func TestMeshedProxyRefusesWhileDiscoveryHasNotAnswered(t *testing.T) {
	server, got := countingBackend(t)
	r := &heldResolver{}
	u := newMeshedUpstream(t, r, 10*time.Millisecond)
	authority := "echo.test.svc.cluster.local:8080"
	for i := range 3 {
		resp, err := roundTrip(u, authority, server)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("request %d went out (status %d) before discovery answered", i, resp.Status)
		}
		if !errors.Is(err, stack.ErrRefusedWithoutMTLS) {
			t.Fatalf("request %d: got %v, want an error wrapping ErrRefusedWithoutMTLS", i, err)
		}
		want := "discovery has not answered for " + authority + "; refusing to send without mTLS"
		if err.Error() != want {
			t.Errorf("request %d: error %q, want %q", i, err, want)
		}
	}
	// Opaque connections are refused the same way.
	if c, _, err := u.DialDestination(context.Background(), server); !errors.Is(err, stack.ErrRefusedWithoutMTLS) {
		if c != nil {
			c.Close()
		}
		t.Errorf("opaque connection: got %v, want an error wrapping ErrRefusedWithoutMTLS", err)
	}
	if n := got.Load(); n != 0 {
		t.Errorf("the server got %d plaintext requests, want 0", n)
	}

	// Once discovery says neither the name nor the address is in the mesh,
	// the request goes where the client sent it.
	r.answer(t, authority, discovery.EndpointSet{Exists: false})
	r.answer(t, server.String(), discovery.EndpointSet{Exists: false})
	resp, err := roundTrip(u, authority, server)
	if err != nil {
		t.Fatalf("after discovery said 'does not exist': %v", err)
	}
	resp.Body.Close()
	if got.Load() != 1 {
		t.Errorf("the server got %d requests, want 1 once discovery answered", got.Load())
	}
}

func TestAnAnswerForTheAddressAloneIsNotEnough(t *testing.T) {
	server, got := countingBackend(t)
	r := &heldResolver{}
	u := newMeshedUpstream(t, r, 10*time.Millisecond)
	authority := "echo.test.svc.cluster.local:8080"
	if resp, err := roundTrip(u, authority, server); err == nil {
		resp.Body.Close()
	}
	// The address is not known, but the name, which may be meshed, has no
	// answer yet.
	r.answer(t, server.String(), discovery.EndpointSet{Exists: false})
	_, err := roundTrip(u, authority, server)
	if want := "discovery has not answered for " + authority + "; refusing to send without mTLS"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	if got.Load() != 0 {
		t.Errorf("the server got %d plaintext requests, want 0", got.Load())
	}
}

func TestProxyWithoutIdentityStillPassesThrough(t *testing.T) {
	server, got := countingBackend(t)
	u := newUpstream(t, &heldResolver{})
	u.dests.waitFirst = 10 * time.Millisecond
	resp, err := roundTrip(u, "echo.test.svc.cluster.local:8080", server)
	if err != nil {
		t.Fatalf("a proxy without an identity refused: %v", err)
	}
	resp.Body.Close()
	if got.Load() != 1 {
		t.Errorf("the server got %d requests, want 1", got.Load())
	}
}

func TestAnAddressOnceMeshedNeverGetsPlaintext(t *testing.T) {
	server, got := countingBackend(t)
	r := &heldResolver{}
	u := newMeshedUpstream(t, r, 10*time.Millisecond)
	vip := netip.MustParseAddrPort("198.19.0.1:8080")
	// Discovery reports the server as a meshed endpoint of the VIP...
	if resp, err := roundTrip(u, vip.String(), vip); err == nil {
		resp.Body.Close()
	}
	r.answer(t, vip.String(), discovery.EndpointSet{Exists: true, Endpoints: []discovery.Endpoint{
		{Addr: server, Identity: "spiffe://cluster.local/ns/test/sa/echo"},
	}})
	// ...and later says it does not know the server's own address.
	if resp, err := roundTrip(u, server.String(), server); err == nil {
		resp.Body.Close()
	}
	r.answer(t, server.String(), discovery.EndpointSet{Exists: false})
	_, err := roundTrip(u, server.String(), server)
	want := server.String() + " is a meshed endpoint that discovery does not know now; refusing to send without mTLS"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	if got.Load() != 0 {
		t.Errorf("the meshed server got %d plaintext requests, want 0", got.Load())
	}
}

func TestMeshedAddressMemoryIsBounded(t *testing.T) {
	m := newMeshedAddrs(time.Hour, 64)
	now := time.Unix(1_000_000, 0)
	first := netip.MustParseAddrPort("10.0.0.1:80")
	m.note([]discovery.Endpoint{{Addr: first, Identity: "spiffe://x/ns/a/sa/b"}, {Addr: netip.MustParseAddrPort("10.0.0.2:80")}}, now)
	if !m.contains(first, now) || m.len() != 1 {
		t.Fatalf("after one meshed and one plain endpoint: contains=%v len=%d, want true 1", m.contains(first, now), m.len())
	}
	if m.contains(first, now.Add(time.Hour+time.Second)) {
		t.Error("an address is still meshed past the TTL")
	}
	for i := range 1000 {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 80)
		m.note([]discovery.Endpoint{{Addr: a, Identity: "spiffe://x/ns/a/sa/b"}}, now)
		if m.len() > 64 {
			t.Fatalf("memory holds %d addresses, more than its bound of 64", m.len())
		}
	}
}

func TestWaitForAFirstAnswerHappensOncePerDestination(t *testing.T) {
	r := &heldResolver{}
	u := newMeshedUpstream(t, r, -time.Second) // the window is over at once
	d := u.dests.get("echo.test.svc.cluster.local:8080")
	// Were the wait per request, this would block: the resolver never
	// answers and the context never ends.
	u.dests.wait(context.Background(), d)
	if d.answered() {
		t.Fatal("the destination counts as answered without an answer")
	}
	_, err := roundTrip(u, "echo.test.svc.cluster.local:8080", netip.MustParseAddrPort("198.19.0.1:8080"))
	if !strings.Contains(err.Error(), "refusing to send without mTLS") {
		t.Errorf("got %v, want a refusal", err)
	}
}

// A request sent to an address discovery knows, by a name whose first
// answer is still awaited, goes by the name once it answers: the name
// wins, as it does once both are known.
func TestTheNameWinsOverAKnownAddressWhileItsAnswerIsAwaited(t *testing.T) {
	byName, toName := countingBackend(t)
	byAddr, toAddr := countingBackend(t)
	r := &heldResolver{}
	u := newUpstream(t, r)
	u.dests.waitFirst = time.Minute
	vip := netip.MustParseAddrPort("198.19.0.1:8081")
	// The address is watched and known already (another client used it).
	u.dests.get(vip.String())
	r.answer(t, vip.String(), discovery.EndpointSet{Exists: true, Endpoints: []discovery.Endpoint{{Addr: byAddr}}})

	authority := "web.test.svc.cluster.local:8081"
	done := make(chan error, 1)
	go func() {
		resp, err := roundTrip(u, authority, vip)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	for !r.watching(authority) {
		time.Sleep(time.Millisecond)
	}
	r.answer(t, authority, discovery.EndpointSet{Exists: true, Endpoints: []discovery.Endpoint{{Addr: byName}}})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if toName.Load() != 1 || toAddr.Load() != 0 {
		t.Errorf("the name's endpoint got %d requests and the address's %d, want 1 and 0", toName.Load(), toAddr.Load())
	}
}
