package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skeinmesh/skein/internal/netns"
)

// upMesh is a skein up mesh a test started, with what the test needs to
// act from inside its pods.
type upMesh struct {
	stateDir, manifestPath string
	// prefix is the network namespace name of a host less the host's own
	// name ("<namespace>-<workload>-<i>").
	prefix string
}

// startUpMesh runs skein up on manifest (see skeinUp) and finds its hosts.
func startUpMesh(t *testing.T, manifest string) *upMesh {
	t.Helper()
	before, _ := os.ReadDir("/run/netns")
	stateDir, manifestPath := skeinUp(t, manifest)
	ctl := upControllerNamespace(t, before)
	return &upMesh{stateDir: stateDir, manifestPath: manifestPath, prefix: strings.TrimSuffix(ctl, "skein-controller")}
}

// pod is the network namespace of the skein up host "<namespace>-<workload>-<i>".
func (m *upMesh) pod(t *testing.T, name string) *netns.Host {
	t.Helper()
	ns := m.prefix + name
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
		t.Fatalf("no host %s in the skein up mesh: %v", name, err)
	}
	return &netns.Host{Name: name, Namespace: ns}
}

// dialFrom returns a dialer whose connections start inside h, so that h's
// proxy (if any) carries them, as it would its own workload's; names are
// resolved with h's hosts file, as h's processes resolve them.
func dialFrom(t *testing.T, h *netns.Host) func(ctx context.Context, network, addr string) (net.Conn, error) {
	t.Helper()
	hosts := map[string]string{}
	f, err := os.Open(filepath.Join("/etc/netns", h.Namespace, "hosts"))
	if err != nil {
		t.Fatalf("hosts file of %s: %v", h.Name, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		for _, name := range fields[1:] {
			hosts[name] = fields[0]
		}
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if ip, ok := hosts[host]; ok {
			host = ip
		}
		return h.DialContext(ctx, network, net.JoinHostPort(host, port))
	}
}

// podHTTP is an HTTP/1.1 client inside h (see dialFrom).
func podHTTP(t *testing.T, h *netns.Host) *http.Client {
	t.Helper()
	return dialHTTP(t, dialFrom(t, h))
}

// dialHTTP is an HTTP client whose connections dial makes.
func dialHTTP(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	tr := &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// podGRPC is a grpc-go connection to target ("name:port") from inside h.
func podGRPC(t *testing.T, h *netns.Host, target string) *grpc.ClientConn {
	t.Helper()
	return dialGRPC(t, dialFrom(t, h), target)
}

// dialGRPC is a grpc-go connection to target whose connections dial
// makes.
func dialGRPC(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error), target string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// logLines returns the lines of a mesh process's log that start with
// prefix ("<workload>-<i>" for an application, "...proxy" for its proxy).
func (m *upMesh) logLines(t *testing.T, name, prefix string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.stateDir, "logs", name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// logsMention reports whether one line of skein up's own log or of the
// controller's holds every one of words.
func (m *upMesh) logsMention(t *testing.T, words ...string) bool {
	t.Helper()
	for _, path := range []string{filepath.Join(filepath.Dir(m.stateDir), "up.log"), filepath.Join(m.stateDir, "logs", "controller.log")} {
		b, _ := os.ReadFile(path)
	line:
		for _, l := range strings.Split(string(b), "\n") {
			for _, w := range words {
				if !strings.Contains(l, w) {
					continue line
				}
			}
			return true
		}
	}
	return false
}

// editManifest replaces old with new in the running mesh's manifest (once;
// old must be there), as a person editing the file would.
func (m *upMesh) editManifest(t *testing.T, old, new string) {
	t.Helper()
	b, err := os.ReadFile(m.manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("manifest has no %q", old)
	}
	if err := os.WriteFile(m.manifestPath, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// api is the --api value of the mesh's controller metrics API.
func (m *upMesh) api() string { return "unix:" + filepath.Join(m.stateDir, "api.sock") }

// getBody sends a GET and returns the status and body ("" on error).
func getBody(c *http.Client, url string, header ...string) (int, string, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "", err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, err = bufio.NewReader(resp.Body).WriteTo(&b)
	if err != nil {
		return resp.StatusCode, "", fmt.Errorf("reading the body: %w", err)
	}
	return resp.StatusCode, b.String(), nil
}

// logsMentionIn reports whether one line of the mesh process name's log
// holds every one of words.
func (m *upMesh) logsMentionIn(t *testing.T, name string, words ...string) bool {
	t.Helper()
line:
	for _, l := range m.logLines(t, name, "") {
		for _, w := range words {
			if !strings.Contains(l, w) {
				continue line
			}
		}
		return true
	}
	return false
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
