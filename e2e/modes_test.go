package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/skeinmesh/skein/internal/netns"
)

// pair is a small mesh of its own: one meshed client and one server, for
// tests that stop or reconfigure proxies.
type pair struct {
	*mesh
	client, server *netns.Host
	discovery      string
}

// newPair builds a client and a server host; the server runs testapp with
// appArgs. The proxies are started by the test.
func newPair(t *testing.T, appArgs ...string) *pair {
	t.Helper()
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Not t.TempDir: its parent is private, and the proxies run as their
	// own uid and read the discovery file here.
	dir, err := os.MkdirTemp("", "skein-e2e-pair-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var m *mesh
	m, err = newMesh(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.close)
	t.Cleanup(func() { m.dumpLogs(t) })
	p := &pair{mesh: m, discovery: filepath.Join(dir, "discovery.yaml")}
	if p.client, err = m.net.AddHost(ctx, "client"); err != nil {
		t.Fatal(err)
	}
	if p.server, err = m.net.AddHost(ctx, "server"); err != nil {
		t.Fatal(err)
	}
	app, err := m.start("app", p.server.Command(context.Background(), filepath.Join(binDir, "testapp"), appArgs...))
	if err != nil {
		t.Fatal(err)
	}
	if err := waitLine(ctx, app, "ready"); err != nil {
		t.Fatal(err)
	}
	// Discovery knows the server only by name: requests to its address go
	// there as they are (passthrough), requests by name are balanced.
	yaml := fmt.Sprintf("services:\n- name: app.test.svc.cluster.local:8080\n  endpoints:\n  - address: %s\n", netip.AddrPortFrom(p.server.IP, 8080))
	if err := os.WriteFile(p.discovery, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTProxyModeShowsTheClientAddressToTheApplication(t *testing.T) {
	p := newPair(t, "-http", ":8081")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := p.inject(ctx, p.client, "redirect", "-discovery-file", p.discovery); err != nil {
		t.Fatal(err)
	}
	if _, err := p.inject(ctx, p.server, "tproxy", "-discovery-file", p.discovery); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // pooled connections must keep showing the right source
		resp, err := httpClient(p.client).Get(fmt.Sprintf("http://%s/whoami", netip.AddrPortFrom(p.server.IP, 8081)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		remote, err := netip.ParseAddrPort(string(body))
		if err != nil {
			t.Fatalf("app answered %q: %v", body, err)
		}
		if remote.Addr() != p.client.IP {
			t.Errorf("request %d: app saw the connection come from %s, want the client's address %s", i, remote.Addr(), p.client.IP)
		}
	}
	// And in-flight HTTP metrics were counted inbound on the server proxy.
	m := scrape(t, p.server)
	if got := m.sum("response_total", map[string]string{"direction": "inbound", "status_code": "200"}); got != 3 {
		t.Errorf("server proxy counted %v inbound 200 responses, want 3", got)
	}
}

func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	p := newPair(t, "-grpc", ":8080", "-delay", "2s")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clientProxy, err := p.inject(ctx, p.client, "redirect", "-discovery-file", p.discovery)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.inject(ctx, p.server, "redirect", "-discovery-file", p.discovery); err != nil {
		t.Fatal(err)
	}
	client, _ := grpcConn(t, p.client, netip.AddrPortFrom(p.server.IP, 8080).String())
	inflight := make(chan error, 1)
	go func() {
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{FillServerId: true})
		inflight <- err
	}()
	time.Sleep(500 * time.Millisecond) // the call is now waiting on the slow server
	clientProxy.signal(syscall.SIGTERM)

	// While draining the proxy says it is not ready.
	if err := waitNotReady(ctx, p.client); err != nil {
		t.Error(err)
	}
	if err := <-inflight; err != nil {
		t.Errorf("in-flight call failed during drain: %v", err)
	}
	select {
	case <-clientProxy.done:
		if code := clientProxy.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("proxy exited with %d after draining, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Error("proxy did not exit within its 5 s grace period after the last request")
	}
}

func TestShutdownEndpointIsLoopbackOnly(t *testing.T) {
	p := newPair(t, "-http", ":8081")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	serverProxy, err := p.inject(ctx, p.server, "redirect", "-discovery-file", p.discovery)
	if err != nil {
		t.Fatal(err)
	}
	// From another host: refused, and the proxy keeps running.
	url := fmt.Sprintf("http://%s:4191/shutdown", p.server.IP)
	resp, err := httpClient(p.client).Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("/shutdown from another host answered %d, want 403", resp.StatusCode)
	}
	// From inside the pod: accepted, and the proxy drains and exits.
	resp, err = httpClient(p.server).Post("http://127.0.0.1:4191/shutdown", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("/shutdown from loopback answered %d, want 202", resp.StatusCode)
	}
	select {
	case <-serverProxy.done:
	case <-time.After(10 * time.Second):
		t.Error("proxy still running 10 s after /shutdown")
	}
}

// waitNotReady polls the proxy's /ready until it stops answering 200.
func waitNotReady(ctx context.Context, h *netns.Host) error {
	c := httpClient(h)
	c.Timeout = time.Second
	for {
		resp, err := c.Get("http://127.0.0.1:4191/ready")
		if err != nil {
			return nil // the admin server is gone: not ready either
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			if !strings.Contains(string(body), "draining") {
				return fmt.Errorf("/ready answered %d %q, want it to say draining", resp.StatusCode, body)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("proxy still ready while draining")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
