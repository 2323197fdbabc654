package dashboard

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func pod(name string, phase corev1.PodPhase, ready bool, labels map[string]string) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "skein", Labels: labels},
		Status:     corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
	}
}

func TestControllerPodIsARunningReadyOne(t *testing.T) {
	sel := map[string]string{"app.kubernetes.io/name": "skein-controller"}
	deleting := pod("a-deleting", corev1.PodRunning, true, sel)
	now := metav1.NewTime(time.Now())
	deleting.DeletionTimestamp = &now
	client := fake.NewClientset(
		pod("a-pending", corev1.PodPending, false, sel),
		pod("a-unready", corev1.PodRunning, false, sel),
		deleting,
		pod("a-other-app", corev1.PodRunning, true, map[string]string{"app.kubernetes.io/name": "web"}),
		pod("c-ready", corev1.PodRunning, true, sel),
		pod("b-ready", corev1.PodRunning, true, sel),
	)
	got, err := ControllerPod(context.Background(), client, "skein", sel)
	if err != nil || got != "b-ready" {
		t.Errorf("ControllerPod = %q, %v; want b-ready (ready, running, first by name)", got, err)
	}
	_, err = ControllerPod(context.Background(), client, "elsewhere", sel)
	if err == nil || !strings.Contains(err.Error(), "no ready controller pod") || !strings.Contains(err.Error(), "elsewhere") {
		t.Errorf("in an empty namespace: %v, want an error naming it", err)
	}
}
