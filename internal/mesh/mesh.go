package mesh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/netns"
	"github.com/skeinmesh/skein/internal/source/files"
)

// Config is what Up needs.
type Config struct {
	// Manifests is a YAML file or a directory of them.
	Manifests string
	// StateDir holds the mesh's files; default DefaultStateDir.
	StateDir string
	// BinDir holds skein-proxy, skein-init and skein-controller; workload
	// commands are looked up there first too.
	BinDir string
	// TrustDomain of the identities; default cluster.local.
	TrustDomain string
	Log         *slog.Logger
}

// Ports of the mesh's own processes inside their hosts.
const (
	controllerGRPCPort  = 8086
	controllerAdminPort = 9996
	prometheusPort      = 9090
	proxyAdminPort      = 4191
)

// Mesh is a running local mesh.
type Mesh struct {
	cfg        Config
	log        *slog.Logger
	net        *netns.Network
	joinKey    joinKey
	controller *netns.Host
	prometheus *netns.Host // nil without a prometheus binary
	system     []*process  // controller, prometheus

	mu        sync.Mutex
	plan      *plan
	vips      map[string]netip.Addr // service key -> virtual IP
	workloads map[string]*workloadRun
	// userIndex numbers each workload seen for its users (users.go).
	userIndex     map[string]int
	nextUserIndex int
	// publishedVIPs are the virtual IP:ports programmed in the hub.
	publishedVIPs map[netip.AddrPort]bool
}

// workloadRun is one Workload's replicas as they run.
type workloadRun struct {
	spec      *v1alpha1.Workload
	instances []*instance
}

// Up runs the mesh in the foreground until ctx ends, then removes all of
// it. ready is called once everything is up. Nothing is started when the
// manifests are invalid or the machine lacks what the mesh needs.
func Up(ctx context.Context, cfg Config, ready func()) (err error) {
	if err := cfg.defaults(); err != nil {
		return err
	}
	if err := checkMachine(cfg.BinDir); err != nil {
		return err
	}
	p, err := readPlan(cfg.Manifests)
	if err != nil {
		return fmt.Errorf("manifests not applied, nothing started:\n%w", err)
	}
	if err := prepareStateDir(cfg.StateDir); err != nil {
		return err
	}
	m := &Mesh{cfg: cfg, log: cfg.Log, vips: map[string]netip.Addr{}, workloads: map[string]*workloadRun{}, userIndex: map[string]int{}}
	files.NoteIgnored(m.log, slog.LevelInfo, p.ignored)
	defer func() {
		if cerr := m.teardown(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	if err := m.start(ctx, p); err != nil {
		return err
	}
	m.waitReady(ctx)
	if err := os.WriteFile(filepath.Join(cfg.StateDir, readyFile), nil, 0o644); err != nil {
		return err
	}
	m.log.Info("mesh is up", "workloads", len(p.workloads), "services", len(p.services), "state", cfg.StateDir)
	if ready != nil {
		ready()
	}
	m.run(ctx)
	return nil
}

// readyWait bounds how long Up waits for the replicas' readiness probes
// before it says the mesh is up anyway (naming the replicas not ready);
// appliedWait how long it then waits for the controller to apply them.
const (
	readyWait   = 60 * time.Second
	appliedWait = 10 * time.Second
)

// waitReady waits until every replica is ready (its probe passed) and the
// controller has applied the manifests that list them, so that "mesh is
// up", and -d's return, mean that every service answers, from proxies and
// unmeshed clients alike. Past its bounds it logs what is still missing
// and returns, leaving the rest to come up (or not) as they would later.
func (m *Mesh) waitReady(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	err := waitFor(rctx, "replicas ready", func() error {
		if unready := m.unready(); len(unready) > 0 {
			return fmt.Errorf("not ready: %s", strings.Join(unready, ", "))
		}
		return nil
	})
	if ctx.Err() != nil {
		return // stopping
	}
	if err != nil {
		m.log.Warn("replicas not ready yet, going on without them", "after", readyWait, "replicas", m.unready())
	}
	// A probe republishes after it flips: publish once more so that the
	// last flip is surely written out, and wait for the controller to
	// have applied it, so that the proxies are told of every ready replica.
	written := time.Now()
	m.republish(ctx)
	actx, cancel := context.WithTimeout(ctx, appliedWait)
	defer cancel()
	if err := m.waitControllerApplied(actx, written); err != nil && ctx.Err() == nil {
		m.log.Warn("the controller has not applied the ready replicas yet, going on", "err", err)
	}
}

// unready names the replicas ("namespace/name") whose probe has not passed.
func (m *Mesh) unready() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, r := range m.workloads {
		for _, in := range r.instances {
			if !in.ready.Load() {
				out = append(out, in.spec.Namespace+"/"+in.name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// waitControllerApplied waits until the controller's manifests were applied
// after since, as its files.AppliedAtMetric says.
func (m *Mesh) waitControllerApplied(ctx context.Context, since time.Time) error {
	url := fmt.Sprintf("http://%s:%d/metrics", m.controller.IP, controllerAdminPort)
	return waitFor(ctx, "controller applied the manifests", func() error {
		body, err := httpGet(m.controller, url)
		if err != nil {
			return err
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("reading the controller's metrics: %w", err)
		}
		samples := families[files.AppliedAtMetric].GetMetric()
		if len(samples) == 0 {
			return fmt.Errorf("no %s in the controller's metrics", files.AppliedAtMetric)
		}
		at := samples[0].GetGauge().GetValue()
		if applied := time.Unix(0, int64(at*1e9)); applied.Before(since) {
			return fmt.Errorf("manifests last applied at %s, written at %s", applied.Format(time.RFC3339Nano), since.Format(time.RFC3339Nano))
		}
		return nil
	})
}

func (cfg *Config) defaults() error {
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = "cluster.local"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	abs, err := filepath.Abs(cfg.Manifests)
	if err != nil {
		return err
	}
	cfg.Manifests = abs
	return nil
}

// checkMachine says plainly what is missing to run a mesh here.
func checkMachine(binDir string) error {
	if os.Geteuid() != 0 {
		return errors.New("skein up needs root: it makes network namespaces and iptables rules (run it with sudo)")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return errors.New("skein up needs network namespaces, which this kernel does not offer")
	}
	for _, tool := range []string{"ip", "iptables", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("skein up needs %s on PATH (scripts/setup.sh installs it)", tool)
		}
	}
	for _, bin := range []string{"skein-proxy", "skein-init", "skein-controller"} {
		if _, err := os.Stat(filepath.Join(binDir, bin)); err != nil {
			return fmt.Errorf("skein up needs %s beside the skein binary in %s (make build puts them there)", bin, binDir)
		}
	}
	return nil
}

// start brings everything up: trust, network, controller, Prometheus, then
// every workload, and publishes services once replicas are ready.
func (m *Mesh) start(ctx context.Context, p *plan) error {
	td, _ := identityTrustDomain(m.cfg.TrustDomain)
	if _, err := identity.Generate(identity.GenerateConfig{TrustDomain: td, Dir: m.path(identityDir)}); err != nil {
		return fmt.Errorf("making the mesh's trust: %w", err)
	}
	key, err := loadJoinKey(m.path(identityDir, identity.JoinTokenKeyFile), m.cfg.TrustDomain)
	if err != nil {
		return err
	}
	m.joinKey = key
	if m.net, err = netns.New(ctx, m.log); err != nil {
		return err
	}
	m.plan = p
	m.allocateVIPs(p)
	if err := m.writeControllerManifests(); err != nil {
		return err
	}
	if m.prometheusWanted() {
		if m.prometheus, err = m.net.AddHost(ctx, "prometheus"); err != nil {
			return err
		}
	}
	if err := m.startController(ctx); err != nil {
		return err
	}
	if err := m.startPrometheus(ctx); err != nil {
		return err
	}
	if err := m.startWorkloads(ctx, p.workloads); err != nil {
		return err
	}
	return m.publish(ctx)
}

func (m *Mesh) path(elem ...string) string {
	return filepath.Join(append([]string{m.cfg.StateDir}, elem...)...)
}

func (m *Mesh) logPath(name string) string { return m.path(LogsDir, name+".log") }

// allocateVIPs gives every new service a virtual IP.
func (m *Mesh) allocateVIPs(p *plan) {
	for _, s := range p.services {
		if _, ok := m.vips[serviceKey(s)]; !ok {
			m.vips[serviceKey(s)] = m.net.AllocateVIP()
		}
	}
}

// localMeshNetwork holds every host skein up makes (internal/netns).
const localMeshNetwork = "198.18.0.0/16"

// startController runs the controller in a host of its own.
func (m *Mesh) startController(ctx context.Context) error {
	h, err := m.net.AddHost(ctx, "skein-controller")
	if err != nil {
		return err
	}
	m.controller = h
	args := []string{
		"-manifests", m.path(controllerDir),
		"-identity-dir", m.path(identityDir),
		"-join-token-key", m.path(identityDir, identity.JoinTokenKeyFile),
		"-trust-domain", m.cfg.TrustDomain,
		"-grpc-addr", fmt.Sprintf("0.0.0.0:%d", controllerGRPCPort),
		"-admin-addr", fmt.Sprintf("0.0.0.0:%d", controllerAdminPort),
		"-api-socket", m.path(APISocketFile),
		// The cluster-* default policies' networks: the usual private
		// ranges and the local mesh's own hosts.
		"-cluster-networks", "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10," + localMeshNetwork,
	}
	if m.prometheus != nil {
		args = append(args, "-prometheus-url", fmt.Sprintf("http://%s:%d", m.prometheus.IP, prometheusPort))
	}
	proc, err := startProcess("controller", m.logPath("controller"), true, m.log, func() *exec.Cmd {
		return h.Command(context.Background(), filepath.Join(m.cfg.BinDir, "skein-controller"), args...)
	})
	if err != nil {
		return err
	}
	m.system = append(m.system, proc)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return waitFor(wctx, "controller ready", func() error {
		return httpOK(h, fmt.Sprintf("http://%s:%d/ready", h.IP, controllerAdminPort))
	})
}

// httpOK GETs url from inside h and wants a 200.
func httpOK(h *netns.Host, url string) error {
	_, err := httpGet(h, url)
	return err
}

// httpGet is the body of a 200 answer to GET url, sent from inside h.
func httpGet(h *netns.Host, url string) ([]byte, error) {
	tr := &http.Transport{DialContext: h.DialContext}
	defer tr.CloseIdleConnections()
	c := &http.Client{Timeout: time.Second, Transport: tr}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// teardown stops every process and removes every namespace and file.
func (m *Mesh) teardown() error {
	m.mu.Lock()
	runs := m.workloads
	m.workloads = map[string]*workloadRun{}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range runs {
		for _, in := range r.instances {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in.stop()
			}()
		}
	}
	wg.Wait()
	for i := len(m.system) - 1; i >= 0; i-- {
		m.system[i].stop(10 * time.Second)
	}
	var errs []error
	if m.net != nil {
		errs = append(errs, m.net.Close())
	}
	errs = append(errs, os.RemoveAll(m.cfg.StateDir))
	m.log.Info("mesh removed")
	return errors.Join(errs...)
}
