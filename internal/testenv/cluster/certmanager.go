package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certManagerBinary is cert-manager's controller as scripts/testcluster.sh
// builds it: cert-manager's own controller packages under a small main
// (testcluster/certmanager), since the module proxy does not serve the
// module of cert-manager's cmd/controller.
const certManagerBinary = "cert-manager-controller"

// CertManager is cert-manager's controller running against a Cluster: the
// Certificate controllers, the CertificateRequest approver, the Issuer
// controller and the CA issuer. It has no webhook (the CRDs' schemas are
// the only admission check), no leader election (one replica) and no ACME,
// Vault or Venafi issuer.
type CertManager struct {
	// Version is the cert-manager release, e.g. v1.21.2.
	Version string
	proc    *process
}

// StartCertManager installs cert-manager's CRDs into the cluster, starts
// its controller in the cluster's host with the administrator's kubeconfig
// and waits until the CRDs are established. The controller stops with the
// cluster. It skips the test like Start when cert-manager is not built.
func (c *Cluster) StartCertManager(t testing.TB) *CertManager {
	t.Helper()
	dir := certManagerDir(t)
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	crds := filepath.Join(dir, "crds")
	if out, err := c.Kubectl(ctx, "apply", "--server-side", "-f", crds).CombinedOutput(); err != nil {
		t.Fatalf("installing cert-manager's CRDs: %v\n%s", err, out)
	}
	if out, err := c.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "-f", crds).CombinedOutput(); err != nil {
		t.Fatalf("waiting for cert-manager's CRDs: %v\n%s", err, out)
	}
	// The log goes beside the other components' (the directory of the
	// administrator's kubeconfig), printed when the test fails.
	cmd := c.Host.Command(context.Background(), filepath.Join(dir, certManagerBinary),
		"--kubeconfig="+c.Kubeconfig)
	p, err := startProcess(c.spawner, "cert-manager", cmd, filepath.Dir(c.Kubeconfig))
	if err != nil {
		t.Fatalf("starting cert-manager: %v", err)
	}
	c.procs = append(c.procs, p)
	if err := waitUntil(ctx, "cert-manager's controllers", func(context.Context) error {
		if !strings.Contains(p.logTail(200), "starting controllers") {
			return errNotReady
		}
		return nil
	}, p); err != nil {
		t.Fatalf("starting cert-manager: %v\n%s", err, p.logTail(logTailLines))
	}
	return &CertManager{Version: strings.TrimPrefix(filepath.Base(dir), "cert-manager-"), proc: p}
}

// Pid is the controller's process id: the same before and after a renewal
// shows it was not restarted.
func (m *CertManager) Pid() int { return m.proc.cmd.Process.Pid }

// Running reports an error if the controller has exited.
func (m *CertManager) Running() error {
	if gone, err := m.proc.exited(); gone {
		return err
	}
	return nil
}

// LogTail returns the last n lines of the controller's log.
func (m *CertManager) LogTail(n int) string { return m.proc.logTail(n) }

// certManagerDir returns the directory holding cert-manager's controller
// and CRDs, building them (with the rest of the cluster's binaries) if
// BuildEnv allows it, and skips the test when they are not there.
func certManagerDir(t testing.TB) string {
	t.Helper()
	script, err := findBuildScript()
	if err != nil {
		t.Fatalf("finding the test cluster's build script: %v", err)
	}
	dir, err := runBuildScript(script, "certmanager-dir")
	if err != nil {
		t.Fatalf("asking %s for cert-manager's directory: %v", buildScript, err)
	}
	if certManagerBuilt(dir) {
		return dir
	}
	if v := os.Getenv(BuildEnv); v == "" || v == "0" {
		t.Skipf("cert-manager's controller not built in %s: run %s build, or set %s=1 to build it here", dir, buildScript, BuildEnv)
	}
	start := time.Now()
	if _, err := runBuildScript(script, "build"); err != nil {
		t.Fatalf("building the test cluster: %v", err)
	}
	if !certManagerBuilt(dir) {
		t.Fatalf("%s build left %s without cert-manager's controller and CRDs", buildScript, dir)
	}
	t.Logf("built cert-manager's controller into %s in %v", dir, time.Since(start).Round(time.Second))
	return dir
}

func certManagerBuilt(dir string) bool {
	info, err := os.Stat(filepath.Join(dir, certManagerBinary))
	if err != nil || info.Mode()&0o111 == 0 {
		return false
	}
	crds, err := filepath.Glob(filepath.Join(dir, "crds", "*.yaml"))
	return err == nil && len(crds) > 0
}
