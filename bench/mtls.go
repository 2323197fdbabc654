package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
)

// The skein-mtls scenario's control plane: a controller in a host of its
// own, serving destinations from a manifest directory and certifying the
// proxies' keys. It starts with the first skein-mtls run and lives until
// the testbed closes; its cost is not a proxy's.
const (
	benchTrustDomain = "cluster.local"
	ctlGRPCPort      = 8086
	ctlAdminPort     = 9996
)

// identityOf is the SPIFFE ID of the workload in host h: the server runs
// the fortio workload, the load host the load workload.
func (tb *testbed) identityOf(h *netns.Host) string {
	return fmt.Sprintf("spiffe://%s/ns/bench/sa/%s", benchTrustDomain, tb.workloadOf(h))
}

// workloadOf is the name of h's Workload in manifests (and its service
// account).
func (tb *testbed) workloadOf(h *netns.Host) string {
	if h == tb.server {
		return "fortio"
	}
	return "load"
}

// deploySkeinMTLS is deploySkein with the proxies' destinations and
// identities from the controller, so the hop between them is mutual TLS.
func deploySkeinMTLS(ctx context.Context, tb *testbed) (*deployment, error) {
	if err := tb.startControlPlane(ctx); err != nil {
		return nil, err
	}
	var tokenErr error
	dep, err := deploySkeinPair(ctx, tb, func(h *netns.Host) []string {
		token, err := tb.joinToken(ctx, h)
		if err != nil {
			tokenErr = err
		}
		return []string{
			"-controller-addr", fmt.Sprintf("%s:%d", tb.ctl.IP, ctlGRPCPort),
			"-identity", tb.identityOf(h),
			"-token-file", token,
			"-trust-anchors", filepath.Join(tb.identityDir(), "ca.crt"),
		}
	})
	if tokenErr != nil && err == nil {
		err = tokenErr
	}
	return dep, err
}

func (tb *testbed) identityDir() string  { return filepath.Join(tb.dir, "identity") }
func (tb *testbed) manifestsDir() string { return filepath.Join(tb.dir, "manifests") }

// startControlPlane makes the identity material, writes the manifests and
// starts the controller in the ctl host, once.
func (tb *testbed) startControlPlane(ctx context.Context) error {
	if tb.controller != nil {
		if tb.controller.exited() {
			return fmt.Errorf("skein-controller exited:\n%s", tb.controller.tail(20))
		}
		return nil
	}
	tb.log.Info("starting skein-controller for the skein-mtls scenario")
	if _, err := runTool(ctx, "", nil, tb.bin.cli, "identity", "generate", "--trust-domain", benchTrustDomain,
		"--out", tb.identityDir(), "--anchor-key", filepath.Join(tb.dir, "anchor.key")); err != nil {
		return err
	}
	// The proxies run as their own uid and read the trust anchor.
	if err := os.Chmod(tb.identityDir(), 0o755); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(tb.identityDir(), "ca.crt"), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(tb.manifestsDir(), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tb.manifestsDir(), "bench.yaml"), []byte(tb.manifests()), 0o644); err != nil {
		return fmt.Errorf("writing manifests: %w", err)
	}
	cmd := tb.ctl.Command(context.Background(), tb.bin.controller,
		"-manifests", tb.manifestsDir(),
		"-identity-dir", tb.identityDir(),
		"-join-token-key", filepath.Join(tb.identityDir(), "join-token.key"),
		"-trust-domain", benchTrustDomain,
		"-grpc-addr", fmt.Sprintf("0.0.0.0:%d", ctlGRPCPort),
		"-admin-addr", fmt.Sprintf("127.0.0.1:%d", ctlAdminPort),
	)
	var err error
	if tb.controller, err = startProcess("skein-controller", cmd, tb.dir); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := waitReady(ctx, tb.ctl, fmt.Sprintf("http://127.0.0.1:%d/ready", ctlAdminPort), tb.controller); err != nil {
		return fmt.Errorf("skein-controller: %w\n%s", err, tb.controller.tail(20))
	}
	return nil
}

// manifests is the controller's view of the testbed: the fortio Service
// at the VIP, the fortio workload in the server host and the load
// workload.
func (tb *testbed) manifests() string {
	var ports []string
	for _, p := range Protocols {
		ports = append(ports, fmt.Sprintf("  - {name: %s, port: %d, targetPort: %d}", p.Name, p.Port, p.Port))
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: fortio, namespace: bench}
spec:
  clusterIP: %s
  selector: {app: fortio}
  ports:
%s
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: fortio, namespace: bench, labels: {app: fortio}}
spec:
  serviceAccountName: fortio
  command: [fortio, server]
  addresses: [%q]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: load, namespace: bench, labels: {app: load}}
spec:
  serviceAccountName: load
  command: [fortio, load]
  addresses: [%q]
`, tb.vip, strings.Join(ports, "\n"), tb.server.IP, tb.load.IP)
}

// joinToken writes a join token for h's workload and returns its file.
func (tb *testbed) joinToken(ctx context.Context, h *netns.Host) (string, error) {
	out, err := runTool(ctx, "", nil, tb.bin.cli, "identity", "token",
		"--key", filepath.Join(tb.identityDir(), "join-token.key"), "--identity", tb.identityOf(h), "--ttl", "2h")
	if err != nil {
		return "", err
	}
	file := filepath.Join(tb.dir, "token-"+h.Name)
	if err := os.WriteFile(file, []byte(strings.TrimSpace(out)), 0o644); err != nil {
		return "", fmt.Errorf("writing join token: %w", err)
	}
	return file, nil
}
