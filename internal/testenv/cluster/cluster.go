// Package cluster starts a real Kubernetes control plane for tests: etcd,
// kube-apiserver and kube-controller-manager built from source by
// scripts/testcluster.sh, inside a test host of their own (internal/netns)
// so that pods in other hosts of the network reach the API server and the
// API server reaches their webhooks, with generated certificates, a
// service-account signing key and RBAC on. The test process talks to it
// through the host (Config.Dial, Kubectl). It has no kubelet and no
// scheduler: the stand-in kubelet (internal/testenv/kubelet) or the test
// places pods and reports their status. It is for tests only.
package cluster

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skeinmesh/skein/internal/netns"
)

// startTimeout bounds how long Start waits for the control plane; on two
// busy cores the API server takes 10-20 s to become ready.
const startTimeout = 2 * time.Minute

// logTailLines is how much of each component's log a failed test prints.
const logTailLines = 40

// Cluster is a running control plane. Everything it started is stopped when
// the test ends.
type Cluster struct {
	// Kubeconfig is the path of a kubeconfig for an administrator (group
	// system:masters).
	Kubeconfig string
	// Config and Client authenticate as the same administrator.
	Config *rest.Config
	Client kubernetes.Interface
	// BinDir holds etcd, kube-apiserver, kube-controller-manager and
	// kubectl.
	BinDir string
	// CA signed the API server's serving certificate and the client
	// certificates; CACertPEM and CAFile are the same certificate encoded.
	CA        *x509.Certificate
	CACertPEM []byte
	CAFile    string
	// Server is the API server's URL (https://HOST-IP:6443), reachable
	// from every host of the network; the test process reaches it through
	// Host (Config.Dial does).
	Server string
	// Host is the test host the components run in.
	Host *netns.Host

	spawner *spawner
	procs   []*process
}

// Start starts a control plane for t in a new host of network, stopped by
// t.Cleanup (the host goes when the network closes). It skips the test in
// -short mode, when not root, and when the binaries are not built (unless
// SKEIN_TESTCLUSTER_BUILD is set, then it builds them).
func Start(t testing.TB, network *netns.Network) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Kubernetes control plane; skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("starts a Kubernetes control plane; needs root")
	}
	binDir := binaryDir(t)

	// The directory first: its removal is then a cleanup that runs after
	// stop, which prints the components' logs from it.
	dir := t.TempDir()
	c := &Cluster{BinDir: binDir, spawner: newSpawner()}
	t.Cleanup(func() { c.stop(t) })
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	host, err := network.AddHost(ctx, hostName)
	if err != nil {
		t.Fatalf("starting test cluster: %v", err)
	}
	c.Host = host
	if err := c.start(ctx, dir); err != nil {
		t.Fatalf("starting test cluster: %v", err)
	}
	return c
}

func (c *Cluster) start(ctx context.Context, dir string) error {
	f := newFiles(dir)
	c.Server = "https://" + net.JoinHostPort(c.Host.IP.String(), strconv.Itoa(apiServerPort))
	admin, controllerManager, err := c.writeCredentials(f)
	if err != nil {
		return err
	}
	c.Kubeconfig = f.adminKubeconfig
	c.Config = restConfig(c.Server, c.CACertPEM, admin)
	c.Config.Dial = c.Host.DialContext
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("making client: %w", err)
	}
	if err := writeKubeconfig(f.controllerManagerKubeconfig, c.Server, c.CACertPEM, "system:kube-controller-manager", controllerManager); err != nil {
		return err
	}

	etcd, err := c.run("etcd", dir, etcdArgs(f))
	if err != nil {
		return err
	}
	if err := waitUntil(ctx, "etcd", c.etcdHealthy, etcd); err != nil {
		return err
	}
	apiServer, err := c.run("kube-apiserver", dir, apiServerArgs(f, c.Host.IP.String()))
	if err != nil {
		return err
	}
	if err := waitUntil(ctx, "kube-apiserver /readyz", c.apiServerReady, apiServer); err != nil {
		return err
	}
	controllers, err := c.run("kube-controller-manager", dir, controllerManagerArgs(f))
	if err != nil {
		return err
	}
	// The default namespace's ServiceAccount appears once the controllers
	// run: a sign that kube-controller-manager is connected and working.
	return waitUntil(ctx, "kube-controller-manager (default ServiceAccount)", c.defaultServiceAccountExists, controllers)
}

// writeCredentials makes the CA, the API server's serving certificate, the
// service-account key pair and the admin kubeconfig, and returns the client
// certificates of the administrator and kube-controller-manager.
func (c *Cluster) writeCredentials(f files) (admin, controllerManager keyPair, err error) {
	ca, err := newCertAuthority()
	if err != nil {
		return admin, controllerManager, err
	}
	c.CA, c.CACertPEM, c.CAFile = ca.cert, ca.certPEM, f.caCert
	serving, err := ca.issueServing("kube-apiserver",
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.ParseIP(APIServerServiceIP), c.Host.IP.AsSlice()})
	if err != nil {
		return admin, controllerManager, err
	}
	if admin, err = ca.issueClient("skein-test-admin", "system:masters"); err != nil {
		return admin, controllerManager, err
	}
	// kube-controller-manager runs every controller under its own name; the
	// group saves granting each controller's role in a test cluster.
	if controllerManager, err = ca.issueClient("system:kube-controller-manager", "system:masters"); err != nil {
		return admin, controllerManager, err
	}
	saKey, saPub, err := newServiceAccountKey()
	if err != nil {
		return admin, controllerManager, err
	}
	for path, data := range map[string][]byte{
		f.caCert:            ca.certPEM,
		f.apiServerCert:     serving.certPEM,
		f.apiServerKey:      serving.keyPEM,
		f.serviceAccountKey: saKey,
		f.serviceAccountPub: saPub,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return admin, controllerManager, fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return admin, controllerManager, writeKubeconfig(f.adminKubeconfig, c.Server, ca.certPEM, "skein-test-admin", admin)
}

func (c *Cluster) run(name, dir string, args []string) (*process, error) {
	cmd := c.Host.Command(context.Background(), filepath.Join(c.BinDir, name), args...)
	p, err := startProcess(c.spawner, name, cmd, dir)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// stop stops the components in the reverse order of their start and, if
// the test failed, prints the end of each one's log as it was before the
// shutdown added its own lines.
func (c *Cluster) stop(t testing.TB) {
	var tails []string
	if t.Failed() {
		for _, p := range c.procs {
			tails = append(tails, fmt.Sprintf("last lines of %s (%s):\n%s", p.name, p.logPath, p.logTail(logTailLines)))
		}
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop()
	}
	c.spawner.close()
	for _, tail := range tails {
		t.Log(tail)
	}
}

// Kubectl returns a kubectl command that talks to the cluster as the
// administrator, from the cluster's host.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) *exec.Cmd {
	return c.Host.Command(ctx, filepath.Join(c.BinDir, "kubectl"),
		append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
}

func (c *Cluster) apiServerReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", errNotReady, err)
	}
	if string(body) != "ok" {
		return fmt.Errorf("%w: /readyz says %q", errNotReady, body)
	}
	return nil
}

func (c *Cluster) defaultServiceAccountExists(ctx context.Context) error {
	_, err := c.Client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
	return err
}

func (c *Cluster) etcdHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/health", etcdClientPort), nil)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{DialContext: c.Host.DialContext}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", errNotReady, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s", errNotReady, resp.Status)
	}
	return nil
}
