package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
)

// exchange is one HTTP request and its answer as the client saw them.
type exchange struct {
	status int
	header http.Header
	body   string
	raw    string // status line, headers and body as they came
}

func fetch(t *testing.T, from *netns.Host, method, url string, host string) exchange {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := httpClient(from).Do(req)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", method, url, from.Name, err)
	}
	defer resp.Body.Close()
	raw, err := httputil.DumpResponse(resp, true)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	return exchange{status: resp.StatusCode, header: resp.Header, body: string(body), raw: string(raw)}
}

// Errors the proxy answers say why only to the workload itself and to
// meshed peers; a client outside the mesh gets a bare status. The admin
// port tells the network whether the proxy is ready and serves its metrics,
// nothing more.
func TestNothingInternalLeaksToClientsOutsideTheMesh(t *testing.T) {
	cp := getControlPlane(t)
	server := cp.servers[0]
	// Nothing listens on this port in the server's host: the server's
	// inbound proxy accepts the connection and then fails to reach the
	// application, with "connection refused" from the application's address.
	const deadPort = 8099
	deadAddr := fmt.Sprintf("%s:%d", server.IP, deadPort)
	internal := []string{"refused", "dial", deadAddr, server.IP.String() + ":", "Skein-Proxy-Error"}

	t.Run("unmeshed client", func(t *testing.T) {
		a := fetch(t, cp.plain, "GET", "http://"+deadAddr+"/x", "")
		if a.status != http.StatusBadGateway || a.body != "Bad Gateway\n" {
			t.Errorf("unmeshed client got %d %q, want 502 \"Bad Gateway\\n\"", a.status, a.body)
		}
		for _, s := range internal {
			if strings.Contains(a.raw, s) {
				t.Errorf("the exchange to an unmeshed client contains %q:\n%s", s, a.raw)
			}
		}
	})
	t.Run("meshed client", func(t *testing.T) {
		// The client's proxy carries the request over mTLS to the server's
		// proxy, which tells its meshed peer why it failed.
		a := fetch(t, cp.client, "GET", "http://"+deadAddr+"/x", "")
		want := "dial tcp " + deadAddr + ": connect: connection refused"
		if a.status != http.StatusBadGateway || !strings.Contains(a.header.Get("Skein-Proxy-Error"), want) {
			t.Errorf("meshed client got %d Skein-Proxy-Error %q, want 502 with %q", a.status, a.header.Get("Skein-Proxy-Error"), want)
		}
	})
	t.Run("local application", func(t *testing.T) {
		// Outbound to an address outside the mesh where nothing listens:
		// the client's own proxy fails and tells its workload why.
		dead := fmt.Sprintf("%s:%d", cp.ctl.IP, deadPort)
		a := fetch(t, cp.client, "GET", "http://"+dead+"/x", "")
		want := "dial tcp " + dead + ": connect: connection refused"
		if a.status != http.StatusBadGateway || !strings.Contains(a.header.Get("Skein-Proxy-Error"), want) {
			t.Errorf("local application got %d Skein-Proxy-Error %q, want 502 with %q", a.status, a.header.Get("Skein-Proxy-Error"), want)
		}
	})

	t.Run("admin port of a ready proxy", func(t *testing.T) {
		admin := fmt.Sprintf("http://%s:4191", server.IP)
		for _, tt := range []struct {
			method, path string
			wantStatus   int
			wantBody     string // "" checks only the status
		}{
			{"GET", "/live", 200, "live\n"},
			{"GET", "/ready", 200, "ready\n"},
			{"GET", "/metrics", 200, ""},
			{"GET", "/identity", 403, "forbidden\n"},
			{"GET", "/debug/pprof/", 403, "forbidden\n"},
			{"POST", "/shutdown", 403, "forbidden\n"},
		} {
			a := fetch(t, cp.plain, tt.method, admin+tt.path, "")
			if a.status != tt.wantStatus || tt.wantBody != "" && a.body != tt.wantBody {
				t.Errorf("%s %s from another host: %d %q, want %d %q", tt.method, tt.path, a.status, a.body, tt.wantStatus, tt.wantBody)
			}
			if tt.path == "/metrics" && !strings.Contains(a.body, "\nrequest_total{") {
				t.Errorf("/metrics from another host has no request_total: Prometheus could not scrape it")
			}
		}
		if got := proxyCert(t, server).Identity; got != echoID {
			t.Errorf("/identity from the pod itself: identity %q, want %q", got, echoID)
		}
	})

	t.Run("admin port of a proxy that is not ready", func(t *testing.T) {
		// A proxy whose controller refuses connections never gets a
		// certificate; why is a raw gRPC error naming the controller.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		h, err := cp.net.AddHost(ctx, "unready")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cp.net.RemoveHost(context.Background(), h.Name) })
		token := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(token, []byte("not-a-token"), 0o644); err != nil {
			t.Fatal(err)
		}
		deadController := fmt.Sprintf("%s:%d", cp.ctl.IP, deadPort)
		p, err := cp.start("proxy-unready", h.Command(context.Background(), filepath.Join(binDir, "skein-proxy"),
			"-controller-addr", deadController, "-identity", clientID, "-token-file", token,
			"-trust-anchors", filepath.Join(cp.identityDir, "ca.crt"), "-log-level", "debug"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.stop)
		local := "http://127.0.0.1:4191/ready"
		const wantLocal = "not ready: no certificate yet: last Certify failed: "
		var a exchange
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if resp, err := httpClient(h).Get(local); err == nil {
				resp.Body.Close()
				if a = fetch(t, h, "GET", local, ""); strings.HasPrefix(a.body, wantLocal) {
					break
				}
			}
		}
		if a.status != http.StatusServiceUnavailable || !strings.HasPrefix(a.body, wantLocal) || !strings.Contains(a.body, deadController) {
			t.Fatalf("/ready from the pod itself: %d %q, want 503 %q and the controller's address", a.status, a.body, wantLocal)
		}
		a = fetch(t, cp.plain, "GET", fmt.Sprintf("http://%s:4191/ready", h.IP), "")
		if a.status != http.StatusServiceUnavailable || a.body != "not ready\n" {
			t.Errorf("/ready from another host: %d %q, want 503 \"not ready\\n\"", a.status, a.body)
		}
		for _, s := range []string{"Certify", "rpc error", deadController, "refused"} {
			if strings.Contains(a.raw, s) {
				t.Errorf("/ready to another host contains %q:\n%s", s, a.raw)
			}
		}
	})
}
