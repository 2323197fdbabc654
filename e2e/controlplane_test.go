package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
)

// The control-plane mesh: a controller in its own host, a meshed client,
// three echo replicas (two in discovery at first) and an unmeshed host.
const (
	trustDomain   = "cluster.local"
	controllerID  = "spiffe://cluster.local/skein/controller"
	clientID      = "spiffe://cluster.local/ns/test/sa/client"
	echoID        = "spiffe://cluster.local/ns/test/sa/echo"
	portCtlGRPC   = 8086
	portCtlAdmin  = 9996
	cpPortGRPC    = 8080
	cpPortHTTP    = 8081
	cpPortOpaque  = 3306
	echoNamespace = "test"
)

type controlPlane struct {
	*mesh
	dir         string // identity material, manifests, tokens
	manifests   string
	identityDir string
	ctl         *netns.Host
	controller  *proc
	client      *netns.Host
	plain       *netns.Host
	servers     []*netns.Host
	vip         netip.Addr
	proxies     map[string]*proc
	// certLifetime is the controller's -cert-lifetime; 0 keeps its default.
	certLifetime time.Duration

	mu        sync.Mutex
	inService map[string]bool // server host name -> listed in the echo Workload
}

var (
	cpOnce sync.Once
	cpMesh *controlPlane
	cpErr  error
)

// getControlPlane returns the shared control-plane mesh, with certificates
// of the default life; tests that need their own (short-lived
// certificates, a replaced issuer) call newControlPlane.
func getControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	requireRoot(t)
	cpOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cpMesh, cpErr = buildControlPlane(ctx, 0)
	})
	if cpErr != nil {
		t.Fatalf("building the control-plane mesh: %v", cpErr)
	}
	t.Cleanup(func() { cpMesh.dumpLogs(t) })
	return cpMesh
}

func closeControlPlane() {
	if cpMesh != nil {
		cpMesh.close()
		os.RemoveAll(cpMesh.dir)
	}
}

// newControlPlane builds a control-plane mesh for one test whose controller
// issues certificates of the given life.
func newControlPlane(t *testing.T, certLifetime time.Duration) *controlPlane {
	t.Helper()
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp, err := buildControlPlane(ctx, certLifetime)
	if err != nil {
		t.Fatalf("building a control-plane mesh: %v", err)
	}
	t.Cleanup(func() {
		cp.close()
		os.RemoveAll(cp.dir)
	})
	t.Cleanup(func() { cp.dumpLogs(t) })
	return cp
}

func skein(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "skein"), args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("skein %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func buildControlPlane(ctx context.Context, certLifetime time.Duration) (*controlPlane, error) {
	dir, err := os.MkdirTemp("", "skein-e2e-cp-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	m, err := newMesh(ctx, dir)
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{
		mesh: m, dir: dir, manifests: filepath.Join(dir, "manifests"), identityDir: filepath.Join(dir, "identity"),
		proxies: map[string]*proc{}, inService: map[string]bool{}, vip: m.net.AllocateVIP(),
		certLifetime: certLifetime,
	}
	if err := cp.build(ctx); err != nil {
		cp.close()
		return nil, err
	}
	return cp, nil
}

func (cp *controlPlane) build(ctx context.Context) error {
	if _, err := skein(ctx, "identity", "generate", "--trust-domain", trustDomain, "--out", cp.identityDir,
		"--anchor-key", filepath.Join(cp.dir, "anchor.key")); err != nil {
		return err
	}
	// The proxies (uid 2102) read the trust anchor; keys stay root's.
	os.Chmod(cp.identityDir, 0o755)
	os.Chmod(filepath.Join(cp.identityDir, "ca.crt"), 0o644)
	if err := os.MkdirAll(cp.manifests, 0o755); err != nil {
		return err
	}
	var err error
	if cp.ctl, err = cp.net.AddHost(ctx, "ctl"); err != nil {
		return err
	}
	if cp.client, err = cp.net.AddHost(ctx, "client"); err != nil {
		return err
	}
	if cp.plain, err = cp.net.AddHost(ctx, "plain"); err != nil {
		return err
	}
	for i := range 3 {
		h, err := cp.net.AddHost(ctx, fmt.Sprintf("echo-%d", i))
		if err != nil {
			return err
		}
		cp.servers = append(cp.servers, h)
	}
	cp.inService[cp.servers[0].Name] = true
	cp.inService[cp.servers[1].Name] = true
	if err := cp.writeManifests(); err != nil {
		return err
	}
	if err := cp.startController(ctx); err != nil {
		return err
	}
	for _, h := range cp.servers {
		app, err := cp.start("app-"+h.Name, h.Command(context.Background(), filepath.Join(binDir, "testapp"), "-id", h.Name,
			"-grpc", fmt.Sprintf(":%d", cpPortGRPC), "-http", fmt.Sprintf(":%d", cpPortHTTP), "-banner", fmt.Sprintf(":%d", cpPortOpaque)))
		if err != nil {
			return err
		}
		if err := waitLine(ctx, app, "ready"); err != nil {
			return err
		}
		if err := cp.injectMeshed(ctx, h, echoID); err != nil {
			return err
		}
	}
	return cp.injectMeshed(ctx, cp.client, clientID)
}

func (cp *controlPlane) startController(ctx context.Context) error {
	args := []string{
		"-manifests", cp.manifests,
		"-identity-dir", cp.identityDir,
		"-join-token-key", filepath.Join(cp.identityDir, "join-token.key"),
		"-trust-domain", trustDomain,
		"-grpc-addr", fmt.Sprintf("0.0.0.0:%d", portCtlGRPC),
		"-admin-addr", fmt.Sprintf("127.0.0.1:%d", portCtlAdmin),
		// The API for skein identity rotate's checks; no Prometheus runs
		// here (the metrics endpoints would answer with errors).
		"-api-socket", cp.apiSocket(), "-prometheus-url", "http://127.0.0.1:9",
		"-log-level", "debug",
	}
	if cp.certLifetime > 0 {
		args = append(args, "-cert-lifetime", cp.certLifetime.String())
	}
	p, err := cp.start("controller", cp.ctl.Command(context.Background(), filepath.Join(binDir, "skein-controller"), args...))
	if err != nil {
		return err
	}
	cp.controller = p
	return waitReady(ctx, cp.ctl, p, fmt.Sprintf("http://127.0.0.1:%d/ready", portCtlAdmin))
}

// apiSocket is the controller's API (skein identity rotate asks it).
func (cp *controlPlane) apiSocket() string { return filepath.Join(cp.dir, "api.sock") }

// injectMeshed starts h's proxy with an identity from the controller and
// extra proxy flags, and waits until it is ready.
func (cp *controlPlane) injectMeshed(ctx context.Context, h *netns.Host, id string, extra ...string) error {
	p, err := cp.startMeshedProxy(ctx, h, id, extra...)
	if err != nil {
		return err
	}
	return waitReady(ctx, h, p, "http://127.0.0.1:4191/ready")
}

// startMeshedProxy is injectMeshed without the wait: the proxy is not ready
// before the controller has certified it.
func (cp *controlPlane) startMeshedProxy(ctx context.Context, h *netns.Host, id string, extra ...string) (*proc, error) {
	args, err := cp.meshedProxyArgs(ctx, h, id)
	if err != nil {
		return nil, err
	}
	p, err := cp.injectNoWait(ctx, h, "redirect", append(args, extra...)...)
	if err != nil {
		return nil, err
	}
	cp.mu.Lock()
	cp.proxies[h.Name] = p
	cp.mu.Unlock()
	return p, nil
}

// meshedProxyArgs are the flags of a proxy in h with identity id, with a
// fresh join token for it.
func (cp *controlPlane) meshedProxyArgs(ctx context.Context, h *netns.Host, id string) ([]string, error) {
	token, err := skein(ctx, "identity", "token", "--key", filepath.Join(cp.identityDir, "join-token.key"), "--identity", id, "--ttl", "2h")
	if err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(cp.dir, "token-"+h.Name)
	if err := os.WriteFile(tokenFile, []byte(strings.TrimSpace(token)), 0o644); err != nil {
		return nil, err
	}
	return []string{
		"-controller-addr", fmt.Sprintf("%s:%d", cp.ctl.IP, portCtlGRPC),
		"-identity", id,
		"-token-file", tokenFile,
		"-trust-anchors", filepath.Join(cp.identityDir, "ca.crt"),
		"-opaque-ports", fmt.Sprint(cpPortOpaque),
		// The ports the test apps serve: their inbound policies are known
		// from startup, as an injected pod's are.
		"-inbound-ports", fmt.Sprintf("%d,%d,%d", cpPortHTTP, cpPortGRPC, cpPortOpaque),
	}, nil
}

// writeManifests writes the controller's manifests from cp.inService,
// atomically.
func (cp *controlPlane) writeManifests() error {
	var echo []string
	for _, h := range cp.servers {
		if cp.inService[h.Name] {
			echo = append(echo, fmt.Sprintf("%q", h.IP))
		}
	}
	yaml := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: %[1]s
  annotations:
    skein.io/opaque-ports: "%[2]d"
spec:
  clusterIP: %[3]s
  selector: {app: echo}
  ports:
  - {name: grpc, port: %[4]d, targetPort: %[4]d}
  - {name: http, port: %[5]d, targetPort: %[5]d}
  - {name: banner, port: %[2]d, targetPort: %[2]d}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata:
  name: echo
  namespace: %[1]s
  labels: {app: echo}
spec:
  serviceAccountName: echo
  command: [testapp]
  addresses: [%[6]s]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata:
  name: client
  namespace: %[1]s
  labels: {app: client}
spec:
  serviceAccountName: client
  command: [testapp]
  addresses: [%[7]q]
`, echoNamespace, cpPortOpaque, cp.vip, cpPortGRPC, cpPortHTTP, strings.Join(echo, ", "), cp.client.IP)
	tmp := filepath.Join(cp.dir, "mesh.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(cp.manifests, "mesh.yaml"))
}

// setInService lists or unlists a server in the echo Workload.
func (cp *controlPlane) setInService(h *netns.Host, in bool) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.inService[h.Name] = in
	return cp.writeManifests()
}
