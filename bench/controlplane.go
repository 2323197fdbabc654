package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/release"
)

// CPConfig says what the control-plane benchmark does: one service with
// Endpoints endpoints, Watchers destination streams on it (each over its
// own TLS connection, as proxies would hold them), then Changes edits of
// the manifests, one endpoint added or removed each.
type CPConfig struct {
	Endpoints int
	Watchers  int
	Changes   int
	// Pause between changes, after every watcher saw the last one, so that
	// the controller's work for one change does not overlap the next.
	Pause time.Duration
	// ChangeTimeout bounds the wait for every watcher to see a change.
	ChangeTimeout time.Duration
	// ProfileDir, when set, receives controlplane-controller.pprof, a
	// 10 s CPU profile of the controller from the start of the churn.
	ProfileDir string
	ModuleRoot string
	Log        *slog.Logger
}

// DefaultCPConfig is the scale issue 6 asks for: 5,000 endpoints, 1,000
// watchers, 20 changes. It takes one to two minutes.
func DefaultCPConfig() CPConfig {
	return CPConfig{Endpoints: 5000, Watchers: 1000, Changes: 20, Pause: 300 * time.Millisecond, ChangeTimeout: 10 * time.Second}
}

// Validate names the first field that makes no sense.
func (c CPConfig) Validate() error {
	var errs []error
	if c.Endpoints < 1 || c.Endpoints > 60000 {
		errs = append(errs, fmt.Errorf("endpoints: want 1 to 60000, got %d", c.Endpoints))
	}
	if c.Watchers < 1 {
		errs = append(errs, fmt.Errorf("watchers: want at least 1, got %d", c.Watchers))
	}
	if c.Changes < 1 {
		errs = append(errs, fmt.Errorf("changes: want at least 1, got %d", c.Changes))
	}
	if c.ChangeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("change timeout: must be positive, got %s", c.ChangeTimeout))
	}
	return errors.Join(errs...)
}

// CPReport is what the control-plane benchmark measured; it is what
// bench/results/controlplane-latest.json holds.
type CPReport struct {
	Started  time.Time `json:"started"`
	Machine  Machine   `json:"machine"`
	Settings struct {
		Endpoints int    `json:"endpoints"`
		Watchers  int    `json:"watchers"`
		Changes   int    `json:"changes"`
		Pause     string `json:"pause"`
		// Debounce is the files source's wait after a change before it
		// reads the directory again; it is part of every propagation time.
		Debounce string `json:"debounce"`
	} `json:"settings"`
	// Subscribe is the time from the first stream opened to every
	// watcher having its first snapshot.
	SubscribeMS float64 `json:"subscribe_ms"`
	// SnapshotBytes is the size of one watcher's first message.
	SnapshotBytes int `json:"snapshot_bytes"`
	// Propagation is, over every change and watcher, the time from the
	// manifest file's rename to the watcher receiving the update.
	Propagation PropagationStats `json:"propagation"`
	// Missed counts (change, watcher) pairs that never saw the change
	// within the timeout; they are not in Propagation.
	Missed int `json:"missed"`
	// BytesPerUpdate is the mean size of what one watcher received for
	// one change (protobuf message sizes, without gRPC and TLS framing).
	BytesPerUpdate float64 `json:"bytes_per_update"`
	// MessagesPerUpdate is the mean number of messages per watcher and
	// change.
	MessagesPerUpdate float64 `json:"messages_per_update"`
	Controller        struct {
		// CPU during the subscriptions and during the churn, in ms.
		SubscribeCPUMS float64 `json:"subscribe_cpu_ms"`
		ChurnCPUMS     float64 `json:"churn_cpu_ms"`
		// CPUPerChangeMS is ChurnCPUMS over the number of changes.
		CPUPerChangeMS float64 `json:"cpu_per_change_ms"`
		RSSMB          float64 `json:"rss_mb"`      // at the end
		PeakRSSMB      float64 `json:"peak_rss_mb"` // VmHWM
	} `json:"controller"`
}

// PropagationStats summarizes propagation times, in milliseconds.
type PropagationStats struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P90     float64 `json:"p90_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
	// PerChangeMaxP50 is the median over changes of the slowest watcher's
	// time: how long "every watcher has seen it" usually takes.
	PerChangeMaxP50 float64 `json:"per_change_all_watchers_p50_ms"`
}

// filesDebounce mirrors internal/source/files' debounce, for the report.
const filesDebounce = 50 * time.Millisecond

// RunControlPlane runs the control-plane benchmark on loopback: it builds
// and starts skein-controller, opens the watchers, churns the manifests
// and returns the figures. It needs no root. Everything it starts is
// stopped before it returns.
func RunControlPlane(ctx context.Context, cfg CPConfig) (*CPReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	root := cfg.ModuleRoot
	if root == "" {
		var err error
		if root, err = ModuleRoot(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating profile directory: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "skein-cp-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	log.Info("building skein-controller and skein")
	if _, err := runTool(ctx, root, release.Environ(), "go", "build", "-tags", release.Tags, "-o", dir+"/", "./cmd/skein-controller", "./cmd/skein"); err != nil {
		return nil, fmt.Errorf("building the controller: %w", err)
	}
	cp := &cpBench{cfg: cfg, dir: dir, log: log}
	if err := cp.start(ctx); err != nil {
		cp.stop()
		return nil, err
	}
	defer cp.stop()
	report := &CPReport{Started: time.Now().UTC(), Machine: describeMachine(root)}
	report.Settings.Endpoints, report.Settings.Watchers, report.Settings.Changes = cfg.Endpoints, cfg.Watchers, cfg.Changes
	report.Settings.Pause, report.Settings.Debounce = cfg.Pause.String(), filesDebounce.String()
	if err := cp.measure(ctx, report); err != nil {
		return nil, err
	}
	return report, nil
}

// cpBench is one control-plane benchmark in progress.
type cpBench struct {
	cfg        CPConfig
	dir        string
	log        *slog.Logger
	controller *process
	grpcAddr   string
	adminAddr  string
	watchers   []*watcher
	stopWatch  context.CancelFunc
	wg         sync.WaitGroup
	// current is the change being propagated; watchers compare every
	// message they get against it.
	current atomic.Pointer[change]
}

func (cp *cpBench) manifests() string { return filepath.Join(cp.dir, "manifests") }
func (cp *cpBench) identity() string  { return filepath.Join(cp.dir, "identity") }

// cpAuthority is the service every watcher asks for.
const cpAuthority = "big.cp.svc.cluster.local:8080"

// start writes the identity and manifests and starts the controller.
func (cp *cpBench) start(ctx context.Context) error {
	cli := filepath.Join(cp.dir, "skein")
	if _, err := runTool(ctx, "", nil, cli, "identity", "generate", "--trust-domain", benchTrustDomain,
		"--out", cp.identity(), "--anchor-key", filepath.Join(cp.dir, "anchor.key")); err != nil {
		return err
	}
	if err := os.MkdirAll(cp.manifests(), 0o755); err != nil {
		return err
	}
	if err := cp.writeManifests(nil); err != nil {
		return err
	}
	if _, err := cp.publish(); err != nil {
		return err
	}
	grpcPort, err := freePort()
	if err != nil {
		return err
	}
	adminPort, err := freePort()
	if err != nil {
		return err
	}
	cp.grpcAddr = fmt.Sprintf("127.0.0.1:%d", grpcPort)
	cp.adminAddr = fmt.Sprintf("127.0.0.1:%d", adminPort)
	cmd := exec.Command(filepath.Join(cp.dir, "skein-controller"),
		"-manifests", cp.manifests(),
		"-identity-dir", cp.identity(),
		"-join-token-key", filepath.Join(cp.identity(), "join-token.key"),
		"-trust-domain", benchTrustDomain,
		"-grpc-addr", cp.grpcAddr,
		"-admin-addr", cp.adminAddr,
		// Every watcher is on loopback: one peer to the controller.
		"-max-destination-streams-per-peer", fmt.Sprint(cp.cfg.Watchers),
		"-log-level", "warn",
	)
	if cp.controller, err = startProcess("skein-controller", cmd, cp.dir); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitReady(ctx, nil, fmt.Sprintf("http://127.0.0.1:%d/ready", adminPort), cp.controller); err != nil {
		return fmt.Errorf("skein-controller: %w\n%s", err, cp.controller.tail(20))
	}
	return nil
}

// stop closes the watchers and stops the controller.
func (cp *cpBench) stop() {
	if cp.stopWatch != nil {
		cp.stopWatch()
	}
	cp.wg.Wait()
	for _, w := range cp.watchers {
		w.conn.Close()
	}
	if cp.controller != nil {
		cp.controller.stop()
	}
}

// endpointAddr is the i-th endpoint's IP: 10.1.0.1 onwards.
func endpointAddr(i int) string { return fmt.Sprintf("10.1.%d.%d", i/250, i%250+1) }

// writeManifests writes the service and its workload, with the base
// endpoints plus extra, atomically (a rename, as editors and `skein up`
// do). It returns nothing but the error; the caller takes the time.
func (cp *cpBench) writeManifests(extra []string) error {
	var b strings.Builder
	b.WriteString(`apiVersion: v1
kind: Service
metadata: {name: big, namespace: cp}
spec:
  clusterIP: 10.96.0.10
  selector: {app: big}
  ports:
  - {name: http, port: 8080, targetPort: 8080}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: big, namespace: cp, labels: {app: big}}
spec:
  serviceAccountName: big
  command: [big]
  addresses:
`)
	for i := range cp.cfg.Endpoints {
		fmt.Fprintf(&b, "  - %s\n", endpointAddr(i))
	}
	for _, a := range extra {
		fmt.Fprintf(&b, "  - %s\n", a)
	}
	tmp := filepath.Join(cp.dir, "big.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing manifests: %w", err)
	}
	return nil
}

// publish renames the written manifests into the watched directory and
// returns when it did.
func (cp *cpBench) publish() (time.Time, error) {
	at := time.Now()
	err := os.Rename(filepath.Join(cp.dir, "big.yaml.tmp"), filepath.Join(cp.manifests(), "big.yaml"))
	return at, err
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// WriteTable prints the control-plane figures, one per line.
func (r *CPReport) WriteTable(w io.Writer) error {
	p := r.Propagation
	_, err := fmt.Fprintf(w, `control plane: %d endpoints, %d watchers, %d changes (files source debounce %s)
subscribe: all %d snapshots in %.0f ms; snapshot %d bytes; controller CPU %.0f ms
propagation (rename -> watcher has it), %d samples: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms; all watchers (median over changes) %.1f ms; missed %d
per change and watcher: %.0f bytes in %.2f messages
controller: churn CPU %.0f ms (%.1f ms per change), RSS %.1f MB, peak RSS %.1f MB
`, r.Settings.Endpoints, r.Settings.Watchers, r.Settings.Changes, r.Settings.Debounce,
		r.Settings.Watchers, r.SubscribeMS, r.SnapshotBytes, r.Controller.SubscribeCPUMS,
		p.Samples, p.P50, p.P90, p.P99, p.Max, p.PerChangeMaxP50, r.Missed,
		r.BytesPerUpdate, r.MessagesPerUpdate,
		r.Controller.ChurnCPUMS, r.Controller.CPUPerChangeMS, r.Controller.RSSMB, r.Controller.PeakRSSMB)
	return err
}
