package kubelet

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/internal/netns"
)

// reportUntilStopped probes the containers every statusInterval and
// reports the pod's status whenever it changes.
func (w *podWorker) reportUntilStopped(ctx context.Context) {
	ticker := time.NewTicker(statusInterval)
	defer ticker.Stop()
	for {
		w.reportStatus(ctx, true)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// reportStatus reports the pod Running with its host's IP, and each
// started container's state; the pod is Ready when it is initialized and
// every container (and sidecar) is ready.
func (w *podWorker) reportStatus(ctx context.Context, initialized bool) {
	phase := corev1.PodPending
	if initialized {
		phase = corev1.PodRunning
	}
	allReady := initialized
	var statuses, initStatuses []corev1.ContainerStatus
	for _, p := range w.containers {
		ready := w.ready(ctx, p)
		s := containerStatus(p, ready)
		if p.init {
			initStatuses = append(initStatuses, s)
			if !isSidecar(p.spec) {
				continue
			}
		} else {
			statuses = append(statuses, s)
		}
		allReady = allReady && ready
	}
	w.updateStatus(ctx, func(status *corev1.PodStatus) {
		status.Phase = phase
		status.ContainerStatuses, status.InitContainerStatuses = statuses, initStatuses
		setCondition(status, corev1.PodInitialized, initialized, "")
		setCondition(status, corev1.ContainersReady, allReady, "")
		setCondition(status, corev1.PodReady, allReady, "")
	})
}

// reportFailure says in the pod's status why it could not start.
func (w *podWorker) reportFailure(ctx context.Context, err error) {
	w.updateStatus(ctx, func(status *corev1.PodStatus) {
		status.Phase = corev1.PodPending
		setCondition(status, corev1.PodInitialized, false, err.Error())
		setCondition(status, corev1.ContainersReady, false, err.Error())
		setCondition(status, corev1.PodReady, false, err.Error())
	})
}

// updateStatus applies change to the pod's current status (with the host's
// addresses filled in) and writes it back if that changed anything.
func (w *podWorker) updateStatus(ctx context.Context, change func(*corev1.PodStatus)) {
	pods := w.cfg.Client.CoreV1().Pods(w.pod.Namespace)
	pod, err := pods.Get(ctx, w.pod.Name, metav1.GetOptions{})
	if err != nil || pod.UID != w.pod.UID {
		return // gone: the informer will stop the worker
	}
	status := pod.Status.DeepCopy()
	hostIP := netns.Gateway.String()
	status.HostIP, status.HostIPs = hostIP, []corev1.HostIP{{IP: hostIP}}
	if w.host != nil {
		podIP := w.host.IP.String()
		status.PodIP, status.PodIPs = podIP, []corev1.PodIP{{IP: podIP}}
	}
	if status.StartTime == nil {
		now := metav1.Now()
		status.StartTime = &now
	}
	change(status)
	if summary(status) == summary(&pod.Status) {
		return
	}
	pod.Status = *status
	_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	switch {
	case err == nil:
		w.log.Debug("pod status updated", "status", summary(status))
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err) || ctx.Err() != nil:
		// Changed or gone meanwhile: the next round tries again.
	default:
		w.log.Warn("updating pod status", "err", err)
	}
}

// summary is what of a status the kubelet reports; a status update is due
// when it changes.
func summary(s *corev1.PodStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", s.Phase, s.PodIP)
	for _, c := range s.Conditions {
		fmt.Fprintf(&b, " %s=%s(%s)", c.Type, c.Status, c.Message)
	}
	for _, c := range append(s.InitContainerStatuses, s.ContainerStatuses...) {
		fmt.Fprintf(&b, " %s:ready=%t,started=%t,running=%t", c.Name, c.Ready, c.Started != nil && *c.Started, c.State.Running != nil)
	}
	return b.String()
}

// setCondition sets a pod condition, keeping its transition time while its
// status stays the same.
func setCondition(status *corev1.PodStatus, typ corev1.PodConditionType, ok bool, message string) {
	want := corev1.ConditionFalse
	if ok {
		want = corev1.ConditionTrue
	}
	for i := range status.Conditions {
		c := &status.Conditions[i]
		if c.Type != typ {
			continue
		}
		if c.Status != want {
			c.Status, c.LastTransitionTime = want, metav1.Now()
		}
		c.Message = message
		return
	}
	status.Conditions = append(status.Conditions, corev1.PodCondition{
		Type: typ, Status: want, Message: message, LastTransitionTime: metav1.Now(),
	})
}

func containerStatus(p *process, ready bool) corev1.ContainerStatus {
	started := p.running() && p.postStartDone.Load() && (p.spec.StartupProbe == nil || p.startupPassed.Load())
	s := corev1.ContainerStatus{Name: p.name, Image: p.spec.Image, Ready: ready, Started: &started}
	if p.running() {
		s.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(p.startedAt)}
		return s
	}
	// As a container runtime reports it: 128+N for a death by signal N.
	exitCode, reason := int32(-1), "Error"
	if ps := p.cmd.ProcessState; ps != nil {
		exitCode = int32(ps.ExitCode())
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			exitCode = 128 + int32(ws.Signal())
		}
	}
	if exitCode == 0 {
		reason = "Completed"
	}
	s.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: exitCode, Reason: reason, StartedAt: metav1.NewTime(p.startedAt)}
	return s
}
