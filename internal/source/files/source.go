// Package files feeds the model from a directory of YAML manifests (v1
// Services, skein.io/v1alpha1 Workloads, gateway.networking.k8s.io/v1
// HTTPRoutes and GRPCRoutes, policy.skein.io/v1alpha1 Servers,
// AuthorizationPolicies, MeshTLSAuthentications and
// NetworkAuthentications, v1 Namespaces for their skein.io/ annotations;
// ServiceAccounts are read and left out) and follows changes to it. This is
// where the truth comes from for the local mesh and for VMs. A directory is
// applied whole or not at all: an edit that breaks it is logged and the
// last good state stays.
package files

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinmesh/skein/internal/model"
)

// debounce lets an editor or `skein up` finish writing several files before
// the directory is read again.
const debounce = 50 * time.Millisecond

// AppliedAtMetric is the gauge of when the directory was last applied
// (Unix seconds): what skein up waits on to know the controller has what it
// wrote.
const AppliedAtMetric = "skein_manifests_last_reload_success_timestamp_seconds"

// Source keeps the model in step with one manifest directory.
type Source struct {
	dir    string
	model  *model.Writer
	log    *slog.Logger
	loaded chan struct{}
	// lastOK is 1 when the last read of the directory was applied, 0 when
	// it was refused; lastOKTime is when the directory was last applied.
	// So an operator can alert on a refused edit, and skein up can tell
	// when what it wrote is in the model.
	lastOK, lastOKTime prometheus.Gauge
}

// New returns a source for dir that writes to m as source "files" and
// registers its metrics with reg (none when nil).
func New(dir string, m *model.Model, log *slog.Logger, reg prometheus.Registerer) (*Source, error) {
	s := &Source{
		dir:    dir,
		model:  m.Writer("files"),
		log:    log.With("source", "files", "dir", dir),
		loaded: make(chan struct{}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skein_manifests_last_reload_successful",
			Help: "Whether the last read of the manifest directory was applied (1) or refused as invalid (0).",
		}),
		lastOKTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: AppliedAtMetric,
			Help: "When the manifest directory was last applied, in seconds since the Unix epoch.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.lastOK, s.lastOKTime} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("manifest metrics: %w", err)
			}
		}
	}
	return s, nil
}

// applied records a read of the directory that was applied.
func (s *Source) applied() {
	s.lastOK.Set(1)
	s.lastOKTime.Set(float64(time.Now().UnixNano()) / 1e9)
}

// Loaded is closed once the directory's first state is in the model.
func (s *Source) Loaded() <-chan struct{} { return s.loaded }

// Run loads the directory, then reloads it on every change until ctx is
// done. An invalid directory at start is returned at once; later it is
// logged and the previous state kept.
func (s *Source) Run(ctx context.Context) error {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", s.dir, err)
	}
	defer watcher.Close()
	// Watch before the first read so no change slips between the two.
	if err := watcher.Add(s.dir); err != nil {
		return fmt.Errorf("watching %s: %w", s.dir, err)
	}
	snap, ignored, err := Load(s.dir)
	if err != nil {
		return fmt.Errorf("loading manifests from %s: %w", s.dir, err)
	}
	s.noteIgnored(slog.LevelInfo, ignored)
	s.model.Replace(snap)
	s.applied()
	close(s.loaded)
	s.log.Info("manifests loaded", "services", len(snap.Services), "instances", len(snap.Instances),
		"http_routes", len(snap.HTTPRoutes), "grpc_routes", len(snap.GRPCRoutes))

	reload := time.NewTimer(0)
	<-reload.C
	defer reload.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-watcher.Events:
			if !ok {
				return errors.New("fsnotify closed its event channel")
			}
			if isManifest(filepath.Base(ev.Name)) {
				reload.Reset(debounce)
			}
		case err, ok := <-watcher.Errors:
			if !ok {
				return errors.New("fsnotify closed its error channel")
			}
			// An overflow means events were lost: read everything again.
			s.log.Warn("watching manifest directory", "err", err)
			reload.Reset(debounce)
		case <-reload.C:
			s.reload()
		}
	}
}

func (s *Source) reload() {
	snap, ignored, err := Load(s.dir)
	if err != nil {
		s.log.Error("manifests invalid, keeping the last good state", "err", err)
		s.lastOK.Set(0)
		return
	}
	s.noteIgnored(slog.LevelDebug, ignored)
	s.model.Replace(snap)
	s.applied()
	s.log.Info("manifests reloaded", "services", len(snap.Services), "instances", len(snap.Instances),
		"http_routes", len(snap.HTTPRoutes), "grpc_routes", len(snap.GRPCRoutes))
}

// noteIgnored logs the documents left out: at the first load for everyone
// to see, after that only when debugging (a reload repeats the same notes).
func (s *Source) noteIgnored(level slog.Level, ignored []Ignored) {
	NoteIgnored(s.log, level, ignored)
}
