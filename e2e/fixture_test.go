package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
)

// Ports of the test services; every replica serves all of them.
const (
	portGRPC   = 8080 // echo: three equal replicas
	portHTTP   = 8081 // web: HTTP/1.1, WebSocket
	portChurn  = 8082 // churn: replicas are removed during a test
	portBanner = 3306 // banner: server speaks first, an opaque port
	portSlow   = 9090 // slow: replica 2 answers 50 ms late
)

const replicas = 3

// shared is the mesh most tests use: a meshed client, an unmeshed client,
// and three meshed server replicas behind one virtual IP.
type shared struct {
	*mesh
	client, plain *netns.Host
	servers       []*netns.Host
	vip           netip.Addr
	discovery     string // the proxies' discovery file
	proxies       map[string]*proc
	churn         []*proc // the churn service's processes, one per replica

	mu       sync.Mutex
	services map[uint16][]netip.AddrPort // port -> endpoints in discovery
}

var (
	sharedOnce sync.Once
	sharedMesh *shared
	sharedErr  error
)

// getShared builds the shared mesh on first use.
func getShared(t *testing.T) *shared {
	t.Helper()
	requireRoot(t)
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sharedMesh, sharedErr = buildShared(ctx)
	})
	if sharedErr != nil {
		t.Fatalf("building the test mesh: %v", sharedErr)
	}
	t.Cleanup(func() { sharedMesh.dumpLogs(t) })
	return sharedMesh
}

func closeSharedMesh() {
	if sharedMesh != nil {
		sharedMesh.close()
	}
}

func buildShared(ctx context.Context) (*shared, error) {
	dir, err := os.MkdirTemp("", "skein-e2e-")
	if err != nil {
		return nil, err
	}
	// The proxies run as their own uid and read the discovery file here.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	m, err := newMesh(ctx, dir)
	if err != nil {
		return nil, err
	}
	s := &shared{
		mesh: m, vip: m.net.AllocateVIP(), discovery: filepath.Join(dir, "discovery.yaml"),
		proxies: map[string]*proc{}, services: map[uint16][]netip.AddrPort{},
	}
	if err := s.build(ctx); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *shared) build(ctx context.Context) error {
	var err error
	if s.client, err = s.net.AddHost(ctx, "client"); err != nil {
		return err
	}
	if s.plain, err = s.net.AddHost(ctx, "plain"); err != nil {
		return err
	}
	for i := range replicas {
		h, err := s.net.AddHost(ctx, fmt.Sprintf("srv-%d", i))
		if err != nil {
			return err
		}
		s.servers = append(s.servers, h)
	}
	// Every service lists every replica, and the hub balances the VIP by
	// connection as kube-proxy would (that is what the unmeshed client gets).
	for _, port := range []uint16{portGRPC, portHTTP, portChurn, portBanner, portSlow} {
		var eps []netip.AddrPort
		for _, h := range s.servers {
			eps = append(eps, addrPort(h.IP, port))
		}
		s.services[port] = eps
		if err := s.net.SetService(ctx, addrPort(s.vip, port), eps); err != nil {
			return err
		}
	}
	if err := s.writeDiscovery(); err != nil {
		return err
	}
	for i, h := range s.servers {
		if _, err := s.startApp(ctx, h, fmt.Sprintf("app-%d", i), "-id", h.Name,
			"-grpc", fmt.Sprintf(":%d", portGRPC), "-http", fmt.Sprintf(":%d", portHTTP),
			"-banner", fmt.Sprintf(":%d", portBanner)); err != nil {
			return err
		}
		delay := "0s"
		if i == 2 {
			delay = "50ms"
		}
		if _, err := s.startApp(ctx, h, fmt.Sprintf("slow-%d", i), "-id", h.Name, "-grpc", fmt.Sprintf(":%d", portSlow), "-delay", delay); err != nil {
			return err
		}
		churn, err := s.startApp(ctx, h, fmt.Sprintf("churn-%d", i), "-id", h.Name, "-grpc", fmt.Sprintf(":%d", portChurn))
		if err != nil {
			return err
		}
		s.churn = append(s.churn, churn)
	}
	for _, h := range append([]*netns.Host{s.client}, s.servers...) {
		if err := s.inject(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

func (s *shared) startApp(ctx context.Context, h *netns.Host, name string, args ...string) (*proc, error) {
	p, err := s.start(name, h.Command(context.Background(), filepath.Join(binDir, "testapp"), args...))
	if err != nil {
		return nil, err
	}
	return p, waitLine(ctx, p, "ready")
}

// inject does what the injector will do for a pod: skein-init's rules, then
// the proxy as its own uid, ready before the test goes on.
func (s *shared) inject(ctx context.Context, h *netns.Host) error {
	p, err := s.mesh.inject(ctx, h, "redirect", "-discovery-file", s.discovery, "-opaque-ports", fmt.Sprint(portBanner))
	if err != nil {
		return err
	}
	s.proxies[h.Name] = p
	return nil
}

var serviceNames = map[uint16]string{
	portGRPC: "echo", portHTTP: "web", portChurn: "churn", portBanner: "banner", portSlow: "slow",
}

// writeDiscovery writes the discovery file from s.services, atomically.
func (s *shared) writeDiscovery() error {
	var b strings.Builder
	b.WriteString("services:\n")
	for _, port := range []uint16{portGRPC, portHTTP, portChurn, portBanner, portSlow} {
		name := serviceNames[port]
		fmt.Fprintf(&b, "- name: %s.test.svc.cluster.local:%d\n  addresses: [\"%s\"]\n", name, port, addrPort(s.vip, port))
		if port == portBanner {
			fmt.Fprintf(&b, "  opaquePorts: [%d]\n", port)
		}
		b.WriteString("  endpoints:\n")
		for _, ep := range s.services[port] {
			pod := ""
			for _, h := range s.servers {
				if h.IP == ep.Addr() {
					pod = h.Name
				}
			}
			fmt.Fprintf(&b, "  - address: %s\n    labels: {namespace: test, service: %s, workload: %s, pod: %s}\n", ep, name, name, pod)
		}
	}
	tmp := s.discovery + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.discovery)
}

// setEndpoints changes one service's endpoints in discovery.
func (s *shared) setEndpoints(port uint16, eps []netip.AddrPort) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services[port] = eps
	return s.writeDiscovery()
}
