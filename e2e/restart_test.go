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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
)

// httpLoad makes GET requests in a loop and counts answers per replica.
type httpLoad struct {
	mu       sync.Mutex
	byServer map[string]int
	failures []error
}

func (l *httpLoad) run(c *http.Client, url string, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			server, err := get(c, url)
			l.mu.Lock()
			if err != nil {
				l.failures = append(l.failures, fmt.Errorf("%s: %w", time.Now().Format("15:04:05.000"), err))
			} else {
				l.byServer[server]++
			}
			l.mu.Unlock()
		}
	}()
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d %q", resp.StatusCode, body)
	}
	return string(body), nil
}

// TestRollingRestartUnderLoadFailsNoRequest restarts the proxies of three
// replicas one after the other, as a rolling update would, while a meshed
// client makes gRPC calls and an unmeshed one GETs through the service's
// virtual IP (kube-proxy's DNAT), on kept-alive and on new connections. As
// in Kubernetes, the replica leaves discovery and the service a moment after
// its proxy got SIGTERM, not before.
func TestRollingRestartUnderLoadFailsNoRequest(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "skein-e2e-restart-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := newMesh(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.close)
	t.Cleanup(func() { m.dumpLogs(t) })

	client, err := m.net.AddHost(ctx, "client")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := m.net.AddHost(ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	var servers []*netns.Host
	for i := range replicas {
		h, err := m.net.AddHost(ctx, fmt.Sprintf("srv-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		app, err := m.start(fmt.Sprintf("app-%d", i), h.Command(context.Background(), filepath.Join(binDir, "testapp"),
			"-id", h.Name, "-grpc", fmt.Sprintf(":%d", portGRPC), "-http", fmt.Sprintf(":%d", portHTTP)))
		if err != nil {
			t.Fatal(err)
		}
		if err := waitLine(ctx, app, "ready"); err != nil {
			t.Fatal(err)
		}
		servers = append(servers, h)
	}

	// Discovery (for the meshed client) and the virtual IP (for the
	// unmeshed one) list the replicas in service.
	vip := m.net.AllocateVIP()
	discovery := filepath.Join(dir, "discovery.yaml")
	inService := []bool{true, true, true}
	publish := func() {
		t.Helper()
		var yaml strings.Builder
		yaml.WriteString("services:\n")
		for _, port := range []uint16{portGRPC, portHTTP} {
			var eps []netip.AddrPort
			fmt.Fprintf(&yaml, "- name: %s.test.svc.cluster.local:%d\n  addresses: [\"%s\"]\n  endpoints:\n", serviceNames[port], port, addrPort(vip, port))
			for i, h := range servers {
				if inService[i] {
					eps = append(eps, addrPort(h.IP, port))
					fmt.Fprintf(&yaml, "  - address: %s\n", addrPort(h.IP, port))
				}
			}
			if err := m.net.SetService(ctx, addrPort(vip, port), eps); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(discovery+".tmp", []byte(yaml.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(discovery+".tmp", discovery); err != nil {
			t.Fatal(err)
		}
	}
	publish()

	// The server proxies keep accepting for 3 s after SIGTERM; the replica
	// leaves the service 1 s after it.
	const removalLag = time.Second
	serverArgs := []string{"-discovery-file", discovery, "-drain-delay", "3s", "-shutdown-grace", "5s"}
	proxies := make([]*proc, replicas)
	for i, h := range servers {
		if proxies[i], err = m.inject(ctx, h, "redirect", serverArgs...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.inject(ctx, client, "redirect", "-discovery-file", discovery); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	grpcLoad, grpcWG := runSteadyLoad(t, client, addrPort(vip, portGRPC).String(), 200, stop)
	plainLoad := &httpLoad{byServer: map[string]int{}}
	var plainWG sync.WaitGroup
	url := fmt.Sprintf("http://%s/id", addrPort(vip, portHTTP))
	keepAlive := httpClient(plain)
	fresh := httpClient(plain)
	fresh.Transport.(*http.Transport).DisableKeepAlives = true
	for _, c := range []*http.Client{keepAlive, keepAlive, fresh, fresh} {
		plainLoad.run(c, url, stop, &plainWG)
	}
	stopLoad := sync.OnceFunc(func() {
		close(stop)
		grpcWG.Wait()
		plainWG.Wait()
	})
	defer stopLoad()

	time.Sleep(time.Second)
	back := make([]time.Time, replicas)
	for i, h := range servers {
		signalled := time.Now()
		proxies[i].signal(syscall.SIGTERM)
		time.Sleep(removalLag)
		inService[i] = false
		publish()
		select {
		case <-proxies[i].done:
			t.Logf("%s: proxy exited %v after SIGTERM", h.Name, time.Since(signalled).Round(10*time.Millisecond))
			if code := proxies[i].cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("%s: proxy exited with %d, want 0", h.Name, code)
			}
		case <-time.After(3*time.Second + 5*time.Second + 5*time.Second):
			t.Fatalf("%s: proxy still running %v after SIGTERM", h.Name, time.Since(signalled))
		}
		if proxies[i], err = m.startProxy(ctx, fmt.Sprintf("proxy-%s-restarted", h.Name), h, "redirect", serverArgs...); err != nil {
			t.Fatal(err)
		}
		inService[i] = true
		publish()
		back[i] = time.Now()
		time.Sleep(time.Second)
	}
	stopLoad()

	grpcFailures := grpcLoad.failed()
	plainLoad.mu.Lock()
	defer plainLoad.mu.Unlock()
	t.Logf("meshed gRPC: %d calls; unmeshed GETs per replica: %v", grpcLoad.calls.Load(), plainLoad.byServer)
	if len(grpcFailures) > 0 {
		t.Errorf("%d of %d meshed gRPC calls failed during the rolling restart, first: %v", len(grpcFailures), grpcLoad.calls.Load(), grpcFailures[0])
	}
	if n := len(plainLoad.failures); n > 0 {
		t.Errorf("%d unmeshed GETs failed during the rolling restart, first: %v, last: %v", n, plainLoad.failures[0], plainLoad.failures[n-1])
	}
	for i, h := range servers {
		if _, ok := grpcLoad.firstAnswerFrom(h.Name, back[i]); !ok {
			t.Errorf("%s answered no meshed call after its proxy's restart", h.Name)
		}
		if plainLoad.byServer[h.Name] == 0 {
			t.Errorf("%s answered no unmeshed GET", h.Name)
		}
	}
}
