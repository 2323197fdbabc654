package inject

import (
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skeinmesh/skein/internal/netfilter"
)

// TCPProbePath is where the proxy's admin port runs a TCP probe of an
// application port: TCPProbePath + "8080".
const TCPProbePath = "/probe/tcp/"

// rewriteTCPProbes turns the kubelet's TCP probes of the application's
// containers and init containers into HTTP probes of the proxy's admin
// port, which connects to the application's port itself, and returns the
// ports so probed, sorted, for the proxy's -probe-tcp-ports.
//
// The kubelet's own TCP probe comes from the node to the pod's address:
// the inbound redirect takes it to the proxy, which accepts every
// connection, so the probe would pass as soon as the proxy runs, and a
// replica would join its Services before its application listens (calls
// to it fail) or stay in them after the application stopped listening.
// The proxy's connections are not redirected, so its probe reaches the
// application. Left as they are: probes with a host of their own, of a
// port the redirect skips (skipInbound), and of a port name the container
// does not declare (the kubelet fails those itself), and past the proxy's
// bound of maxInboundPorts distinct ports, the probes of further ports (a
// proxy given more would not start). Timings, thresholds and the probe's
// kind (startup, readiness, liveness) are kept.
func rewriteTCPProbes(spec *corev1.PodSpec, skipInbound []netfilter.PortRange) []uint16 {
	var ports []uint16
	for _, containers := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for i := range containers {
			c := &containers[i]
			for _, p := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
				if p == nil || p.TCPSocket == nil || p.TCPSocket.Host != "" {
					continue
				}
				port := probePort(c, p.TCPSocket.Port)
				if port == 0 || skipped(port, skipInbound) {
					continue
				}
				known := slices.Contains(ports, port)
				if !known && len(ports) >= maxInboundPorts {
					continue
				}
				p.TCPSocket = nil
				p.HTTPGet = &corev1.HTTPGetAction{
					Path: TCPProbePath + strconv.Itoa(int(port)),
					Port: intstr.FromInt32(AdminPort),
				}
				if !known {
					ports = append(ports, port)
				}
			}
		}
	}
	slices.Sort(ports)
	return ports
}

// probePort is the port number a probe names, a number or one of the
// container's port names; 0 when it names none.
func probePort(c *corev1.Container, port intstr.IntOrString) uint16 {
	if port.Type == intstr.Int {
		if n := port.IntValue(); n > 0 && n <= 65535 {
			return uint16(n)
		}
		return 0
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal && cp.ContainerPort > 0 && cp.ContainerPort <= 65535 {
			return uint16(cp.ContainerPort)
		}
	}
	return 0
}

func skipped(port uint16, ranges []netfilter.PortRange) bool {
	return slices.ContainsFunc(ranges, func(r netfilter.PortRange) bool {
		return int(port) >= r.First && int(port) <= r.Last
	})
}
