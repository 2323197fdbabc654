package inject

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The application's TCP probes become HTTP probes of the proxy's admin
// port, which the proxy is told to run; other probes are left alone.
func TestTCPProbesAreRunByTheProxy(t *testing.T) {
	tcp := func(port intstr.IntOrString, host string) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port, Host: host}},
			PeriodSeconds: 3, FailureThreshold: 7, TimeoutSeconds: 2,
		}
	}
	httpGet := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}}}
	pod := testPod(map[string]string{AnnotationInject: InjectEnabled, AnnotationSkipInboundPorts: "9000-9010"})
	pod.Spec.Containers = []corev1.Container{
		{
			Name:           "web",
			Ports:          []corev1.ContainerPort{{Name: "grpc", ContainerPort: 8080}},
			StartupProbe:   tcp(intstr.FromString("grpc"), ""),
			ReadinessProbe: tcp(intstr.FromInt32(8081), ""),
			LivenessProbe:  httpGet,
		},
		{
			Name:           "side",
			ReadinessProbe: tcp(intstr.FromInt32(9005), ""),         // skipped by the redirect
			LivenessProbe:  tcp(intstr.FromString("nope"), ""),      // no such port: the kubelet fails it
			StartupProbe:   tcp(intstr.FromInt32(8081), "10.0.0.1"), // another host
		},
	}
	// An application's own native sidecar, probed as a container is.
	pod.Spec.InitContainers = []corev1.Container{{Name: "cache", StartupProbe: tcp(intstr.FromInt32(7070), "")}}
	original := pod.DeepCopy()
	patched, _, err := Inject(pod, nil, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	web, side := patched.Spec.Containers[0], patched.Spec.Containers[1]
	for name, tc := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{
		"web startup (named port)": {web.StartupProbe, "/probe/tcp/8080"},
		"web readiness":            {web.ReadinessProbe, "/probe/tcp/8081"},
		"cache startup":            {cache(patched).StartupProbe, "/probe/tcp/7070"},
	} {
		p := tc.probe
		if p.TCPSocket != nil || p.HTTPGet == nil || p.HTTPGet.Path != tc.path || p.HTTPGet.Port != intstr.FromInt32(AdminPort) {
			t.Errorf("%s: got %+v, want GET %s on port %d", name, p.ProbeHandler, tc.path, AdminPort)
		}
		if p.PeriodSeconds != 3 || p.FailureThreshold != 7 || p.TimeoutSeconds != 2 {
			t.Errorf("%s: timings %d/%d/%d, want the original 3/7/2", name, p.PeriodSeconds, p.FailureThreshold, p.TimeoutSeconds)
		}
	}
	if web.LivenessProbe.HTTPGet.Path != "/ready" || web.LivenessProbe.HTTPGet.Port != intstr.FromInt32(8080) {
		t.Errorf("an HTTP probe was changed: %+v", web.LivenessProbe.HTTPGet)
	}
	for name, p := range map[string]*corev1.Probe{"skipped port": side.ReadinessProbe, "unknown port name": side.LivenessProbe, "other host": side.StartupProbe} {
		if p.TCPSocket == nil || p.HTTPGet != nil {
			t.Errorf("%s: rewritten to %+v, want it left alone", name, p.ProbeHandler)
		}
	}
	if got := envValue(proxy(t, patched), "SKEIN_PROXY_PROBE_TCP_PORTS"); got != "7070,8080,8081" {
		t.Errorf("SKEIN_PROXY_PROBE_TCP_PORTS = %q, want 7070,8080,8081", got)
	}
	if original.Spec.Containers[0].StartupProbe.TCPSocket == nil || pod.Spec.Containers[0].StartupProbe.TCPSocket == nil {
		t.Error("Inject changed the pod it was given")
	}

	// No TCP probe: nothing for the proxy to run.
	plain, _, err := Inject(testPod(map[string]string{AnnotationInject: InjectEnabled}), nil, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range proxy(t, plain).Env {
		if e.Name == "SKEIN_PROXY_PROBE_TCP_PORTS" {
			t.Errorf("a pod without TCP probes got %s=%q", e.Name, e.Value)
		}
	}
}

// The proxy runs the probes of at most maxInboundPorts ports (it refuses
// more); the probes of further ports are left as the pod wrote them, and
// a port already run takes its other probes along.
func TestTCPProbesPastTheProxysBoundAreLeftAlone(t *testing.T) {
	tcp := func(port int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}}
	}
	pod := testPod(map[string]string{AnnotationInject: InjectEnabled})
	pod.Spec.Containers = nil
	for i := range int32(maxInboundPorts + 6) {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
			Name:           fmt.Sprintf("c%d", i),
			ReadinessProbe: tcp(10000 + i),
			LivenessProbe:  tcp(10000), // the first container's port: always run
		})
	}
	patched, _, err := Inject(pod, nil, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	ports := strings.Split(envValue(proxy(t, patched), "SKEIN_PROXY_PROBE_TCP_PORTS"), ",")
	if len(ports) != maxInboundPorts || ports[0] != "10000" || ports[len(ports)-1] != strconv.Itoa(10000+maxInboundPorts-1) {
		t.Fatalf("SKEIN_PROXY_PROBE_TCP_PORTS has %d ports (%s..%s), want the first %d", len(ports), ports[0], ports[len(ports)-1], maxInboundPorts)
	}
	for _, c := range patched.Spec.Containers {
		i, err := strconv.Atoi(strings.TrimPrefix(c.Name, "c"))
		if err != nil {
			continue // the proxy, where it is a container
		}
		if rewritten := c.ReadinessProbe.HTTPGet != nil; rewritten != (i < maxInboundPorts) {
			t.Errorf("%s: readiness probe of port %d rewritten: %v", c.Name, 10000+i, rewritten)
		}
		if c.LivenessProbe.HTTPGet == nil {
			t.Errorf("%s: the liveness probe of a port the proxy runs was left alone", c.Name)
		}
	}
}

func proxy(t *testing.T, pod *corev1.Pod) *corev1.Container {
	t.Helper()
	c, _ := Proxy(pod)
	if c == nil {
		t.Fatal("no proxy container")
	}
	return c
}

// cache is the test pod's own init container, wherever the injector put
// its containers beside it.
func cache(pod *corev1.Pod) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == "cache" {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}
