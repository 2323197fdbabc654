// Package source turns the Kubernetes-shaped objects both sources read
// (v1 Services, skein.io Workloads) into the model's types, so that a
// Service means the same thing in a manifest directory and in a cluster.
// The sources themselves live in files/ and kube/.
package source

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/model"
)

// Service converts a v1 Service. Fields in error are left out of the
// result, which is usable either way; the error joins *v1alpha1.FieldError
// values naming them. Only TCP ports are kept: the mesh proxies TCP.
func Service(s *corev1.Service) (model.Service, error) {
	out := model.Service{
		Namespace:   s.Namespace,
		Name:        s.Name,
		Selector:    s.Spec.Selector,
		Annotations: SkeinAnnotations(s.Annotations),
	}
	var errs []error
	ips, field := s.Spec.ClusterIPs, func(i int) string { return fmt.Sprintf("spec.clusterIPs[%d]", i) }
	if len(ips) == 0 && s.Spec.ClusterIP != "" {
		ips, field = []string{s.Spec.ClusterIP}, func(int) string { return "spec.clusterIP" }
	}
	for i, text := range ips {
		if text == corev1.ClusterIPNone || text == "" {
			continue
		}
		addr, err := netip.ParseAddr(text)
		if err != nil {
			errs = append(errs, fieldError(field(i), "%q is not an IP address", text))
			continue
		}
		out.ClusterIPs = append(out.ClusterIPs, addr.Unmap())
	}
	for i, p := range s.Spec.Ports {
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		port, err := servicePort(p)
		if err != nil {
			errs = append(errs, fieldError(fmt.Sprintf("spec.ports[%d].%s", i, err.Field), "%s", err.Problem))
			continue
		}
		out.Ports = append(out.Ports, port)
	}
	if value, ok := s.Annotations[model.OpaquePortsAnnotation]; ok {
		ports, err := model.ParseOpaquePorts(value)
		if err != nil {
			errs = append(errs, fieldError(fmt.Sprintf("metadata.annotations[%s]", model.OpaquePortsAnnotation), "%v", err))
		}
		out.OpaquePorts = ports
	}
	return out, errors.Join(errs...)
}

// SkeinAnnotations are the skein.io/ annotations of an object (nil when it
// has none): the policy compiler reads them; the rest mean nothing to the
// mesh.
func SkeinAnnotations(all map[string]string) map[string]string {
	var out map[string]string
	for k, v := range all {
		if strings.HasPrefix(k, "skein.io/") {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

func servicePort(p corev1.ServicePort) (model.ServicePort, *v1alpha1.FieldError) {
	if p.Port < 1 || p.Port > 65535 {
		return model.ServicePort{}, &v1alpha1.FieldError{Field: "port", Problem: fmt.Sprintf("%d is not a port number (1-65535)", p.Port)}
	}
	out := model.ServicePort{Name: p.Name, Port: uint16(p.Port)}
	switch {
	case p.TargetPort.Type == intstr.String && p.TargetPort.StrVal != "":
		out.TargetPortName = p.TargetPort.StrVal
	case p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal != 0:
		if p.TargetPort.IntVal < 1 || p.TargetPort.IntVal > 65535 {
			return model.ServicePort{}, &v1alpha1.FieldError{Field: "targetPort", Problem: fmt.Sprintf("%d is not a port number (1-65535)", p.TargetPort.IntVal)}
		}
		out.TargetPort = uint16(p.TargetPort.IntVal)
	}
	return out, nil
}

// WorkloadInstances turns a Workload into one instance per address, named
// "<name>-<i>", ready unless spec.notReadyAddresses lists it (readiness is
// the business of whoever runs it) and meshed unless spec.inject is false.
// It validates the Workload first.
func WorkloadInstances(w *v1alpha1.Workload) ([]model.Instance, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	ports := map[string]uint16{}
	for _, p := range w.Spec.Ports {
		if p.Name != "" && (p.Protocol == "" || strings.EqualFold(p.Protocol, "TCP")) {
			ports[p.Name] = uint16(p.ContainerPort)
		}
	}
	var probes []model.ProbePath
	if p := w.Spec.ReadinessProbe; p != nil && p.HTTPGet != nil {
		port := uint16(p.HTTPGet.Port.IntValue())
		if name := p.HTTPGet.Port.StrVal; name != "" {
			port = ports[name]
		}
		probes = []model.ProbePath{{Port: port, Path: cmp.Or(p.HTTPGet.Path, "/")}}
	}
	instances := make([]model.Instance, 0, len(w.Spec.Addresses))
	for i, text := range w.Spec.Addresses {
		addr := netip.MustParseAddr(text) // Validate checked it
		instances = append(instances, model.Instance{
			Namespace:      w.Namespace,
			Name:           WorkloadInstanceName(w.Name, i),
			Workload:       w.Name,
			Labels:         w.Labels,
			ServiceAccount: w.Spec.ServiceAccount(),
			IP:             addr.Unmap(),
			Ports:          ports,
			Ready:          !slices.Contains(w.Spec.NotReadyAddresses, text),
			Meshed:         w.Spec.Injected(),
			External:       true,
			ProbePaths:     probes,

			DefaultInboundPolicy: w.Annotations[policyv1.DefaultPolicyAnnotation],
			Annotations:          SkeinAnnotations(w.Annotations),
		})
	}
	return instances, nil
}

// WorkloadInstanceName names the instance of a Workload's i-th address.
func WorkloadInstanceName(workload string, i int) string { return fmt.Sprintf("%s-%d", workload, i) }

func fieldError(field, format string, args ...any) error {
	return &v1alpha1.FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}
