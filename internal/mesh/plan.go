package mesh

import (
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/source/files"
)

// The ports every injected host's proxy holds; a workload cannot use them.
var proxyPorts = []int32{4140, 4143, 4191}

// maxInboundPorts is skein-proxy's bound on -inbound-ports
// (proxy.MaxInboundPorts).
const maxInboundPorts = 64

// plan is a validated set of manifests.
type plan struct {
	services  []*corev1.Service
	workloads []*v1alpha1.Workload
	// httpRoutes and grpcRoutes are passed to the controller as they are.
	httpRoutes []*gatewayv1.HTTPRoute
	grpcRoutes []*gatewayv1.GRPCRoute
	// authz are the Namespaces and policy.skein.io objects, also passed
	// on as they are (they name workloads by label, not by address).
	authz   []runtime.Object
	ignored []files.Ignored // documents read and left out
}

// readPlan reads and validates the manifests at path: everything the
// controller's file source checks, plus what running them needs. Errors
// name the file, the object and the field.
func readPlan(path string) (*plan, error) {
	m, err := files.Read(path)
	if err != nil {
		return nil, err
	}
	var errs []error
	hostNames := map[string]string{}
	for _, w := range m.Workloads {
		fail := func(field string, err error) {
			errs = append(errs, m.Fail(v1alpha1.WorkloadKind, w.Namespace, w.Name, field, err))
		}
		if len(w.Spec.Command) == 0 {
			fail("spec.command", errors.New("is required: skein up runs it in each replica"))
		}
		if len(w.Spec.Addresses) > 0 {
			fail("spec.addresses", errors.New("is set by skein up for the replicas it runs; leave it out"))
		}
		if n := w.Spec.ReplicaCount(); n < 0 || n > 50 {
			fail("spec.replicas", fmt.Errorf("%d is out of range 0..50", n))
		}
		if n := len(w.Spec.Ports); w.Spec.Injected() && n > maxInboundPorts {
			fail("spec.ports", fmt.Errorf("%d ports; the sidecar proxy watches the inbound policies of at most %d", n, maxInboundPorts))
		}
		seen := map[int32]string{}
		for i, p := range w.Spec.Ports {
			field := fmt.Sprintf("spec.ports[%d].containerPort", i)
			if other, dup := seen[p.ContainerPort]; dup {
				fail(field, fmt.Errorf("port %d conflicts with %s", p.ContainerPort, other))
			}
			seen[p.ContainerPort] = field
			if w.Spec.Injected() && slices.Contains(proxyPorts, p.ContainerPort) {
				fail(field, fmt.Errorf("port %d conflicts with the sidecar proxy's ports %v", p.ContainerPort, proxyPorts))
			}
		}
		host := hostBase(w)
		if len(host) > maxHostBase {
			fail("metadata.name", fmt.Errorf("namespace and name together are %d characters; at most %d fit a host name", len(host)-1, maxHostBase-1))
		}
		if other, dup := hostNames[host]; dup {
			fail("metadata.name", fmt.Errorf("replicas would be named like those of %s", other))
		}
		hostNames[host] = w.Namespace + "/" + w.Name
	}
	for _, s := range m.Services {
		seen := map[int32]bool{}
		for i, p := range s.Spec.Ports {
			if seen[p.Port] {
				errs = append(errs, m.Fail("Service", s.Namespace, s.Name, fmt.Sprintf("spec.ports[%d].port", i), fmt.Errorf("port %d is listed twice", p.Port)))
			}
			seen[p.Port] = true
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p := &plan{services: m.Services, workloads: m.Workloads, httpRoutes: m.HTTPRoutes, grpcRoutes: m.GRPCRoutes, ignored: m.Ignored}
	for _, o := range m.Namespaces {
		p.authz = append(p.authz, o)
	}
	for _, o := range m.Servers {
		p.authz = append(p.authz, o)
	}
	for _, o := range m.MeshTLSAuthentications {
		p.authz = append(p.authz, o)
	}
	for _, o := range m.NetworkAuthentications {
		p.authz = append(p.authz, o)
	}
	for _, o := range m.AuthorizationPolicies {
		p.authz = append(p.authz, o)
	}
	return p, nil
}

// maxHostBase leaves room for "-NN" in a host name of at most 32 characters.
const maxHostBase = 29

// hostBase is the prefix of a workload's host names: "<namespace>-<name>".
func hostBase(w *v1alpha1.Workload) string {
	return w.Namespace + "-" + w.Name
}

// instanceName is the pod-like name of replica i of w.
func instanceName(w *v1alpha1.Workload, i int) string {
	return fmt.Sprintf("%s-%d", w.Name, i)
}

// targetPort resolves a service port's target on w: a number, or the name
// of one of w's ports. 0 means w does not serve it.
func targetPort(p corev1.ServicePort, w *v1alpha1.Workload) uint16 {
	switch {
	case p.TargetPort.Type == intstr.String && p.TargetPort.StrVal != "":
		for _, wp := range w.Spec.Ports {
			if wp.Name == p.TargetPort.StrVal {
				return uint16(wp.ContainerPort)
			}
		}
		return 0
	case p.TargetPort.IntVal != 0:
		return uint16(p.TargetPort.IntVal)
	default:
		return uint16(p.Port)
	}
}

// selects reports whether s selects w.
func selects(s *corev1.Service, w *v1alpha1.Workload) bool {
	if s.Namespace != w.Namespace || len(s.Spec.Selector) == 0 {
		return false
	}
	for k, v := range s.Spec.Selector {
		if w.Labels[k] != v {
			return false
		}
	}
	return true
}

// dnsNames are the names a service answers to from a host in namespace ns.
func dnsNames(s *corev1.Service, ns string) []string {
	names := []string{
		s.Name + "." + s.Namespace + ".svc.cluster.local",
		s.Name + "." + s.Namespace + ".svc",
		s.Name + "." + s.Namespace,
	}
	if s.Namespace == ns {
		names = append(names, s.Name)
	}
	return names
}

// workloadKey identifies a workload across reloads.
func workloadKey(w *v1alpha1.Workload) string { return w.Namespace + "/" + w.Name }

func serviceKey(s *corev1.Service) string { return s.Namespace + "/" + s.Name }
