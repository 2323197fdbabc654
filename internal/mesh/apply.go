package mesh

import (
	"cmp"
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/skeinmesh/skein/api/v1alpha1"
)

// startWorkloads starts the replicas of ws, all at once.
func (m *Mesh) startWorkloads(ctx context.Context, ws []*v1alpha1.Workload) error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, w := range ws {
		run := &workloadRun{spec: w}
		m.mu.Lock()
		m.workloads[workloadKey(w)] = run
		m.mu.Unlock()
		for i := range int(w.Spec.ReplicaCount()) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := m.addInstance(ctx, run, i)
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// addInstance starts replica i of run and records it, keeping the
// replicas in order (replicas start concurrently): a scale-down stops the
// last ones, and the controller names the i-th address "<name>-<i>".
func (m *Mesh) addInstance(ctx context.Context, run *workloadRun, i int) error {
	in, err := m.startInstance(ctx, run.spec, i)
	if err != nil {
		return err
	}
	m.mu.Lock()
	at, _ := slices.BinarySearchFunc(run.instances, i, func(in *instance, i int) int { return cmp.Compare(in.index, i) })
	run.instances = slices.Insert(run.instances, at, in)
	m.mu.Unlock()
	return nil
}

// run follows the manifests and keeps tokens fresh until ctx ends.
func (m *Mesh) run(ctx context.Context) {
	changes := make(chan struct{}, 1)
	go m.watchManifests(ctx, changes)
	tokens := time.NewTicker(tokenTTL / 4)
	defer tokens.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
			m.reload(ctx)
		case <-tokens.C:
			m.refreshTokens()
		}
	}
}

// reload applies the manifests as they are now, or keeps everything as it
// is when they are invalid.
func (m *Mesh) reload(ctx context.Context) {
	p, err := readPlan(m.cfg.Manifests)
	if err != nil {
		m.log.Error("manifests changed but are invalid; nothing applied", "err", err)
		return
	}
	if err := m.apply(ctx, p); err != nil {
		m.log.Error("applying manifests", "err", err)
		return
	}
	m.log.Info("manifests applied", "workloads", len(p.workloads), "services", len(p.services))
}

// apply moves the running mesh to plan p: new services get virtual IPs,
// removed workloads stop, changed ones are replaced, and replica counts
// follow. Services are republished at the end.
func (m *Mesh) apply(ctx context.Context, p *plan) error {
	m.mu.Lock()
	m.plan = p
	m.allocateVIPs(p)
	wanted := map[string]*v1alpha1.Workload{}
	for _, w := range p.workloads {
		wanted[workloadKey(w)] = w
	}
	var stop []*instance
	var start []*workloadRun
	for key, run := range m.workloads {
		w, ok := wanted[key]
		if !ok || !sameRun(run.spec, w) {
			stop = append(stop, run.instances...)
			delete(m.workloads, key)
			continue
		}
		run.spec = w
		n := int(w.Spec.ReplicaCount())
		if len(run.instances) > n {
			stop = append(stop, run.instances[n:]...)
			run.instances = run.instances[:n]
		}
	}
	for key, w := range wanted {
		if _, ok := m.workloads[key]; !ok {
			run := &workloadRun{spec: w}
			m.workloads[key] = run
			start = append(start, run)
		} else if run := m.workloads[key]; len(run.instances) < int(w.Spec.ReplicaCount()) {
			start = append(start, run)
		}
	}
	m.mu.Unlock()

	// Stopped replicas leave the services first, so no new connection goes
	// to them; then they stop.
	for _, in := range stop {
		in.ready.Store(false)
	}
	errs := []error{m.publish(ctx)}
	for _, in := range stop {
		in.stop()
	}
	for _, run := range start {
		m.mu.Lock()
		from, to := len(run.instances), int(run.spec.Spec.ReplicaCount())
		m.mu.Unlock()
		for i := from; i < to; i++ {
			errs = append(errs, m.addInstance(ctx, run, i))
		}
	}
	errs = append(errs, m.publish(ctx))
	return errors.Join(errs...)
}

// sameRun reports whether a workload's replicas can keep running under
// its new spec (only the replica count changed).
func sameRun(a, b *v1alpha1.Workload) bool {
	ac, bc := a.DeepCopy(), b.DeepCopy()
	ac.Spec.Replicas, bc.Spec.Replicas = nil, nil
	return reflect.DeepEqual(ac.Labels, bc.Labels) && reflect.DeepEqual(ac.Spec, bc.Spec)
}

// watchManifests signals changes on changes, debounced, until ctx ends.
// The directory is watched, so that editors' rename-over saves are seen.
func (m *Mesh) watchManifests(ctx context.Context, changes chan<- struct{}) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		m.log.Error("cannot watch the manifests; edits will not be applied", "err", err)
		return
	}
	defer w.Close()
	dir := m.cfg.Manifests
	if !isDir(dir) {
		dir = filepath.Dir(dir)
	}
	if err := w.Add(dir); err != nil {
		m.log.Error("cannot watch the manifests; edits will not be applied", "err", err)
		return
	}
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.Events:
			if isDir(m.cfg.Manifests) || filepath.Clean(ev.Name) == m.cfg.Manifests {
				settle = time.After(200 * time.Millisecond)
			}
		case err := <-w.Errors:
			m.log.Warn("watching the manifests", "err", err)
		case <-settle:
			settle = nil
			select {
			case changes <- struct{}{}:
			default:
			}
		}
	}
}

// refreshTokens re-mints every proxy's join token; proxies read theirs at
// each renewal.
func (m *Mesh) refreshTokens() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.workloads {
		for _, in := range r.instances {
			if in.proxy != nil {
				if _, err := m.writeToken(in); err != nil {
					m.log.Error("refreshing a join token", "instance", in.name, "err", err)
				}
			}
		}
	}
}
