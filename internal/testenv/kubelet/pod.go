package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/internal/netns"
)

// errPodDeleted is the cause of a worker's stop when its pod is deleted,
// as opposed to the kubelet shutting down.
var errPodDeleted = errors.New("pod deleted")

// statusInterval is how often a worker runs its containers' due probes
// and, when something changed, reports the pod's status; it is also the
// period of a probe that sets none: faster than a real kubelet's 10 s
// default, so that tests are quick.
const statusInterval = time.Second

// cleanupTimeout bounds removing a pod's host and object after its stop.
const cleanupTimeout = 30 * time.Second

// podWorker runs one pod in its own test host, from start to deletion.
type podWorker struct {
	cfg    Config
	node   *kubelet
	pod    *corev1.Pod // as first seen
	log    *slog.Logger
	dir    string // TokenDir/<pod-uid>: volumes and logs
	ctx    context.Context
	cancel context.CancelCauseFunc

	host         *netns.Host
	apiServerEnv []corev1.EnvVar // KUBERNETES_SERVICE_HOST and _PORT
	containers   []*process      // started so far, init containers first
	procs        sync.WaitGroup
}

func newPodWorker(node *kubelet, pod *corev1.Pod) *podWorker {
	cfg := node.cfg
	ctx, cancel := context.WithCancelCause(node.ctx)
	return &podWorker{
		cfg:    cfg,
		node:   node,
		pod:    pod,
		log:    cfg.Log.With("pod", pod.Namespace+"/"+pod.Name),
		dir:    filepath.Join(cfg.TokenDir, string(pod.UID)),
		ctx:    ctx,
		cancel: cancel,
	}
}

// stop makes run return; cause errPodDeleted also deletes the pod object.
func (w *podWorker) stop(cause error) { w.cancel(cause) }

// run starts the pod, reports its status until the worker is stopped, then
// cleans up.
func (w *podWorker) run() {
	defer w.cleanup()
	if err := w.start(w.ctx); err != nil {
		if w.ctx.Err() == nil {
			w.log.Error("starting pod", "err", err)
			w.reportFailure(w.ctx, err)
		}
		<-w.ctx.Done()
		return
	}
	w.log.Info("pod started", "ip", w.host.IP)
	w.reportUntilStopped(w.ctx)
}

// start creates the pod's host and volumes and starts its containers: init
// containers one after the other, then the rest.
func (w *podWorker) start(ctx context.Context) error {
	host, err := w.cfg.Network.AddHost(ctx, HostName(w.pod))
	if err != nil {
		return err
	}
	w.host = host
	if s := w.node.services; s != nil {
		if err := s.addHost(host, podName{namespace: w.pod.Namespace, name: w.pod.Name}); err != nil {
			return err
		}
		w.apiServerEnv = s.apiServerEnv()
	}
	tokens, err := w.prepareVolumes(ctx)
	if err != nil {
		return err
	}
	w.procs.Go(func() { tokens.refreshUntilDone(ctx) })
	w.reportStatus(ctx, false)

	for _, c := range w.pod.Spec.InitContainers {
		p, err := w.startContainer(ctx, c, true)
		if err != nil {
			return err
		}
		if isSidecar(c) {
			// As a kubelet (1.29+) does: the next container starts once
			// the sidecar has started (postStart hook done, startupProbe
			// passed), whether or not it is ready.
			if err := w.waitStarted(ctx, p); err != nil {
				return fmt.Errorf("sidecar %s: %w", c.Name, err)
			}
			continue
		}
		select {
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if p.err != nil {
			return fmt.Errorf("init container %s: %w (log %s)", c.Name, p.err, p.logPath)
		}
	}
	for _, c := range w.pod.Spec.Containers {
		p, err := w.startContainer(ctx, c, false)
		if err != nil {
			return err
		}
		// The next container starts after this one's postStart hook, not
		// after its startupProbe.
		if err := w.runPostStart(ctx, p); err != nil {
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
	}
	return nil
}

// terminate stops the pod's containers as a kubelet (1.29+) does: SIGTERM
// to the regular containers (and any init container still running), and
// once they have all exited, to the native sidecars, the last started
// first, each after the one before it has exited; a container that has
// not exited stopDelay after its SIGTERM is killed. So a sidecar proxy
// still serves its application while the application shuts down.
func (w *podWorker) terminate() {
	var first, sidecars []*process
	for _, p := range w.containers {
		if p.init && isSidecar(p.spec) {
			sidecars = append(sidecars, p)
		} else {
			first = append(first, p)
		}
	}
	for _, p := range first {
		p.stop()
	}
	for _, p := range first {
		<-p.done
	}
	for _, p := range slices.Backward(sidecars) {
		p.stop()
		<-p.done
	}
}

func isSidecar(c corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// waitStarted runs a sidecar's postStart hook and waits until it passes
// its startupProbe, which may fail failureThreshold times in a row (then
// the sidecar is killed: see started).
func (w *podWorker) waitStarted(ctx context.Context, p *process) error {
	if err := w.runPostStart(ctx, p); err != nil {
		return err
	}
	for {
		if w.started(ctx, p) {
			w.log.Debug("sidecar started", "container", p.name, "after", time.Since(p.startedAt))
			return nil
		}
		if p.startupFailed.Load() {
			return fmt.Errorf("startup probe failed %d times in a row (log %s)", p.startup.failures, p.logPath)
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before it started: %v (log %s)", p.err, p.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(statusInterval / 5):
		}
	}
}

func (w *podWorker) startContainer(ctx context.Context, c corev1.Container, init bool) (*process, error) {
	// The container is stopped by terminate, in a kubelet's order, not
	// when the worker's context ends.
	cctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	cmd, err := w.command(cctx, c)
	if err != nil {
		stop()
		return nil, err
	}
	p, err := startProcess(cmd, c, init, filepath.Join(w.dir, c.Name+".log"))
	if err != nil {
		stop()
		return nil, err
	}
	p.stop = stop
	w.containers = append(w.containers, p)
	w.procs.Go(p.wait)
	w.log.Debug("container started", "container", c.Name, "log", p.logPath)
	return p, nil
}

// cleanup stops the containers (terminate), waits for the worker's other
// goroutines, removes the host and, if the pod was deleted, its object.
func (w *podWorker) cleanup() {
	w.cancel(nil)
	w.terminate()
	w.procs.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if w.host != nil {
		if s := w.node.services; s != nil {
			s.removeHost(w.host)
		}
		if err := w.cfg.Network.RemoveHost(ctx, w.host.Name); err != nil {
			w.log.Warn("removing pod host", "err", err)
		}
	}
	if context.Cause(w.ctx) != errPodDeleted {
		return
	}
	// The pod's processes are gone: end its graceful deletion so that its
	// ReplicaSet can go on.
	err := w.cfg.Client.CoreV1().Pods(w.pod.Namespace).Delete(ctx, w.pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      &metav1.Preconditions{UID: &w.pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		w.log.Warn("deleting pod", "err", err)
	}
	w.log.Info("pod stopped")
}

// invalidHostChars are what a pod name may hold but a host name may not.
var invalidHostChars = regexp.MustCompile(`[^a-z0-9-]+`)

// HostName is the name of the test host a pod runs in, unique and at most
// 32 characters: the start of the pod's name and of its UID.
func HostName(pod *corev1.Pod) string {
	name := invalidHostChars.ReplaceAllString(strings.ToLower(pod.Name), "-")
	if len(name) > 24 {
		name = name[:24]
	}
	uid := strings.ReplaceAll(string(pod.UID), "-", "")
	if len(uid) > 7 {
		uid = uid[:7]
	}
	return strings.Trim(name, "-") + "-" + uid
}
