package e2e

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
	"github.com/skeinmesh/skein/internal/release"
)

// proxyUID is the uid the sidecar runs as; skein-init exempts its traffic.
const proxyUID = 2102

var (
	binDir   string // built skein-proxy, skein-init and testapp
	buildErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if os.Geteuid() != 0 || testing.Short() {
			return m.Run() // every test skips
		}
		dir, err := os.MkdirTemp("", "skein-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o755)
		binDir = dir
		cmd := exec.Command("go", "build", "-tags", release.Tags, "-o", dir+"/", "../cmd/skein-proxy", "../cmd/skein-init", "../cmd/skein-controller", "../cmd/skein", "../cmd/skein-demo", "./testapp")
		cmd.Env = release.Environ()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building binaries: %v\n%s", err, out)
		}
		defer closeSharedMesh()
		defer closeControlPlane()
		defer closeWireMesh()
		return m.Run()
	}()
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end test: needs root for network namespaces and iptables")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// mesh is a network of test hosts with processes in them.
type mesh struct {
	net   *netns.Network
	dir   string
	mu    sync.Mutex
	procs []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func newMesh(ctx context.Context, dir string) (*mesh, error) {
	n, err := netns.New(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	return &mesh{net: n, dir: dir}, nil
}

func (m *mesh) close() {
	m.mu.Lock()
	procs := m.procs
	m.mu.Unlock()
	for _, p := range procs {
		p.stop()
	}
	m.net.Close()
}

// start runs cmd in the background, its output in a log file, until the
// mesh closes or stop is called.
func (m *mesh) start(name string, cmd *exec.Cmd) (*proc, error) {
	p := &proc{name: name, cmd: cmd, log: filepath.Join(m.dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	m.mu.Lock()
	m.procs = append(m.procs, p)
	m.mu.Unlock()
	return p, nil
}

// signal sends sig to the process group (ip netns exec, setpriv and the
// program itself).
func (p *proc) signal(sig syscall.Signal) {
	if p.cmd.Process != nil {
		syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// tail returns the last lines of the process's log.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// inject runs skein-init in h with the given mode, then skein-proxy as its
// own uid with proxyArgs, and waits until the proxy is ready.
func (m *mesh) inject(ctx context.Context, h *netns.Host, mode string, proxyArgs ...string) (*proc, error) {
	p, err := m.injectNoWait(ctx, h, mode, proxyArgs...)
	if err != nil {
		return nil, err
	}
	return p, waitReady(ctx, h, p, "http://127.0.0.1:4191/ready")
}

// injectNoWait is inject without the wait for readiness.
func (m *mesh) injectNoWait(ctx context.Context, h *netns.Host, mode string, proxyArgs ...string) (*proc, error) {
	out, err := h.Command(ctx, filepath.Join(binDir, "skein-init"), "--proxy-uid", fmt.Sprint(proxyUID), "--mode", mode).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("skein-init in %s: %v\n%s", h.Name, err, out)
	}
	return m.launchProxy("proxy-"+h.Name, h, mode, proxyArgs...)
}

// startProxy runs skein-proxy in h, whose rules skein-init already set, as
// its own uid with proxyArgs (which win over the defaults here), and waits
// until it is ready. name names its log.
func (m *mesh) startProxy(ctx context.Context, name string, h *netns.Host, mode string, proxyArgs ...string) (*proc, error) {
	p, err := m.launchProxy(name, h, mode, proxyArgs...)
	if err != nil {
		return nil, err
	}
	return p, waitReady(ctx, h, p, "http://127.0.0.1:4191/ready")
}

// launchProxy is startProxy without the wait for readiness.
func (m *mesh) launchProxy(name string, h *netns.Host, mode string, proxyArgs ...string) (*proc, error) {
	user := netns.User{UID: proxyUID, GID: proxyUID}
	if mode == "tproxy" {
		// Transparent sockets need CAP_NET_ADMIN.
		user.AmbientCaps = []string{"net_admin", "net_raw"}
	}
	// The instance as the controller names it: a host "echo-0" is
	// instance 0 of Workload echo, a host "strict" that of Workload strict
	// (whose instance is strict-0: the workload= label lets the controller
	// find its inbound policy all the same).
	workload := strings.TrimRight(strings.TrimRight(h.Name, "0123456789"), "-")
	args := append([]string{
		"-mode", mode,
		"-labels", "namespace=test,workload=" + workload + ",pod=" + h.Name,
		"-shutdown-grace", "5s",
		"-drain-delay", "1s",
		"-log-level", "debug",
	}, proxyArgs...)
	return m.start(name, h.CommandAs(context.Background(), user, filepath.Join(binDir, "skein-proxy"), args...))
}

// dumpLogs prints every process's last log lines when t failed.
func (m *mesh) dumpLogs(t *testing.T) {
	if !t.Failed() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.procs {
		t.Logf("--- %s (last lines of %s)\n%s", p.name, p.log, p.tail(30))
	}
}

// dialer returns a dial function whose sockets live in host h's namespace,
// so their traffic is redirected by h's rules like the application's own.
func dialer(h *netns.Host) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return h.DialContext
}

// httpClient is a plain HTTP/1.1 client whose connections start in h.
func httpClient(h *netns.Host) *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: dialer(h), DisableCompression: true},
		Timeout:   30 * time.Second,
	}
}

// waitReady polls url (from inside h) until it answers 200 or p exits.
func waitReady(ctx context.Context, h *netns.Host, p *proc, url string) error {
	c := httpClient(h)
	c.Timeout = time.Second
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before %s was ready:\n%s", p.name, url, p.tail(20))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: last error %v\n%s", url, err, p.tail(20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitLine waits until the process's log has a line equal to want.
func waitLine(ctx context.Context, p *proc, want string) error {
	for {
		f, err := os.Open(p.log)
		if err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if sc.Text() == want {
					f.Close()
					return nil
				}
			}
			f.Close()
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before printing %q:\n%s", p.name, want, p.tail(20))
		case <-ctx.Done():
			return fmt.Errorf("%s did not print %q:\n%s", p.name, want, p.tail(20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// addrPort joins a host address and a port.
func addrPort(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
