package kube

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/source"
)

// ProxyContainerName is the name of the injected sidecar. A pod is meshed
// when it has a container (or native-sidecar init container) of that name:
// the skein.io/inject annotation only asks for injection, which may not
// have happened.
const ProxyContainerName = "skein-proxy"

func podInstance(p *corev1.Pod) model.Instance {
	ip, _ := netip.ParseAddr(p.Status.PodIP) // invalid until the pod has one
	return model.Instance{
		Namespace:      p.Namespace,
		Name:           p.Name,
		Workload:       workloadName(p),
		Labels:         p.Labels,
		ServiceAccount: p.Spec.ServiceAccountName,
		IP:             ip.Unmap(),
		Ports:          namedPorts(p),
		Ready:          podReady(p),
		Meshed:         hasProxy(p),
		ProbePaths:     probePaths(p),

		DefaultInboundPolicy: p.Annotations[policyv1.DefaultPolicyAnnotation],
		Annotations:          source.SkeinAnnotations(p.Annotations),
	}
}

// probePaths lists the kubelet's HTTP GET probes (readiness, liveness,
// startup) of the pod's application containers, ports resolved by name.
func probePaths(p *corev1.Pod) []model.ProbePath {
	ports := namedPorts(p)
	var out []model.ProbePath
	for _, c := range p.Spec.Containers {
		for _, probe := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
			if probe == nil || probe.HTTPGet == nil {
				continue
			}
			port := probe.HTTPGet.Port.IntValue()
			if name := probe.HTTPGet.Port.StrVal; name != "" {
				port = int(ports[name])
			}
			if port < 1 || port > 65535 {
				continue
			}
			pp := model.ProbePath{Port: uint16(port), Path: cmp.Or(probe.HTTPGet.Path, "/")}
			if !slices.Contains(out, pp) {
				out = append(out, pp)
			}
		}
	}
	return out
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func hasProxy(p *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for _, c := range cs {
			if c.Name == ProxyContainerName {
				return true
			}
		}
	}
	return false
}

func namedPorts(p *corev1.Pod) map[string]uint16 {
	ports := map[string]uint16{}
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for _, c := range cs {
			for _, port := range c.Ports {
				if port.Name != "" && (port.Protocol == "" || port.Protocol == corev1.ProtocolTCP) && port.ContainerPort > 0 && port.ContainerPort <= 65535 {
					ports[port.Name] = uint16(port.ContainerPort)
				}
			}
		}
	}
	return ports
}

// workloadName is the "workload" label of a pod's endpoints: its
// controller's name, with a ReplicaSet mapped to its Deployment by dropping
// the pod-template-hash suffix; for bare pods the app.kubernetes.io/name or
// app label, else the pod's own name.
func workloadName(p *corev1.Pod) string {
	for _, ref := range p.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		if hash := p.Labels["pod-template-hash"]; ref.Kind == "ReplicaSet" && hash != "" {
			if name, ok := strings.CutSuffix(ref.Name, "-"+hash); ok {
				return name
			}
		}
		return ref.Name
	}
	for _, label := range []string{"app.kubernetes.io/name", "app"} {
		if v := p.Labels[label]; v != "" {
			return v
		}
	}
	return p.Name
}

// endpointSlice converts a slice that belongs to a service (label
// kubernetes.io/service-name) and lists IP addresses.
func endpointSlice(es *discoveryv1.EndpointSlice) (model.EndpointSlice, bool) {
	service := es.Labels[discoveryv1.LabelServiceName]
	if service == "" || es.AddressType == discoveryv1.AddressTypeFQDN {
		return model.EndpointSlice{}, false
	}
	out := model.EndpointSlice{Namespace: es.Namespace, Name: es.Name, Service: service}
	for _, p := range es.Ports {
		if p.Port == nil || *p.Port < 1 || *p.Port > 65535 || (p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP) {
			continue
		}
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		out.Ports = append(out.Ports, model.SlicePort{Name: name, Port: uint16(*p.Port)})
	}
	for _, ep := range es.Endpoints {
		e := model.SliceEndpoint{Ready: ep.Conditions.Ready == nil || *ep.Conditions.Ready}
		if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" && (ref.Namespace == "" || ref.Namespace == es.Namespace) {
			e.Pod = ref.Name
		}
		for _, a := range ep.Addresses {
			if addr, err := netip.ParseAddr(a); err == nil {
				e.Addresses = append(e.Addresses, addr.Unmap())
			}
		}
		out.Endpoints = append(out.Endpoints, e)
	}
	return out, true
}
