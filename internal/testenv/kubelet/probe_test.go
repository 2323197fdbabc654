package kubelet

import (
	"os/exec"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skeinmesh/skein/internal/netns"
	"github.com/skeinmesh/skein/internal/testenv"
	"github.com/skeinmesh/skein/internal/testenv/cluster"
)

// TestProbesComeFromTheNode holds the stand-in kubelet's probes to a real
// one's: they come from the node's address (so a pod that refuses the
// node goes unready after failureThreshold failures, and ready again
// once it accepts), and a liveness probe that keeps failing kills the
// container.
func TestProbesComeFromTheNode(t *testing.T) {
	network := testenv.NewNetwork(t)
	c := cluster.Start(t, network)
	client := c.Client
	ctx := t.Context()
	startKubelet(t, Config{
		Client:   client,
		NodeName: "stand-in",
		Network:  network,
		Images:   map[string]string{testImage: buildTestapp(t)},
		TokenDir: t.TempDir(),
	})
	ns := createNamespace(t, client)
	httpGet := func(port int32) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/id", Port: intstr.FromInt32(port)}}
	}
	for _, p := range []*corev1.Pod{{
		ObjectMeta: metav1.ObjectMeta{Name: "probed"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: testImage, Args: []string{"-http", ":8081"},
			StartupProbe:   &corev1.Probe{ProbeHandler: httpGet(8081), PeriodSeconds: 1, FailureThreshold: 30},
			ReadinessProbe: &corev1.Probe{ProbeHandler: httpGet(8081), PeriodSeconds: 1, FailureThreshold: 2},
		}}},
	}, {
		ObjectMeta: metav1.ObjectMeta{Name: "not-alive"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: testImage, Args: []string{"-http", ":8081"},
			// Nothing listens on port 9.
			LivenessProbe: &corev1.Probe{ProbeHandler: httpGet(9), PeriodSeconds: 1, FailureThreshold: 2},
		}}},
	}} {
		if _, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitForPod := func(name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			p, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err == nil && cond(p) {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("pod %s: %s did not happen in 30s; status %+v (error %v)", name, what, p.Status, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	ready := func(p *corev1.Pod) bool { return podCondition(p, corev1.PodReady) }

	pod := waitForPod("probed", "Ready", ready)
	host, ok := network.Host(HostName(pod))
	if !ok {
		t.Fatalf("pod %s has no host", pod.Name)
	}
	// The pod refuses the node's address: its probes fail, from there.
	rule := []string{"INPUT", "-s", netns.Gateway.String(), "-p", "tcp", "--dport", "8081", "-j", "REJECT", "--reject-with", "tcp-reset"}
	iptables := func(op string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"netns", "exec", host.Namespace, "iptables", op}, rule...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables %s: %v\n%s", op, err, out)
		}
	}
	iptables("-I")
	waitForPod("probed", "unready while the node is refused", func(p *corev1.Pod) bool { return !ready(p) })
	iptables("-D")
	waitForPod("probed", "Ready again once the node is let in", ready)

	p := waitForPod("not-alive", "the container killed by its liveness probe", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Terminated != nil
	})
	if code := p.Status.ContainerStatuses[0].State.Terminated.ExitCode; code != 137 || ready(p) {
		t.Errorf("container killed by its liveness probe: exit code %d (want 137, SIGKILL), pod ready %v", code, ready(p))
	}
}
