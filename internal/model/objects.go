package model

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
)

// The types below are what sources write into the model. The model keeps
// the maps and slices it is given: a source must not modify an object after
// handing it over.

// Service is a logical service: a name, virtual IPs and ports, and either a
// label selector or explicit EndpointSlices.
type Service struct {
	Namespace string
	Name      string
	// ClusterIPs are the service's virtual IPs; empty for a headless service.
	ClusterIPs []netip.Addr
	Ports      []ServicePort
	// Selector picks the instances behind the service when it has no
	// EndpointSlices; empty means "no selection".
	Selector map[string]string
	// OpaquePorts are service ports whose traffic is not protocol-detected
	// (annotation skein.io/opaque-ports).
	OpaquePorts []uint16
	// Annotations are the Service's skein.io/ annotations (timeouts,
	// retries, breakers: see internal/controller/policy).
	Annotations map[string]string
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name string
	Port uint16
	// TargetPort is the port endpoints listen on; 0 means Port.
	TargetPort uint16
	// TargetPortName, when set, names a port of each instance instead of
	// TargetPort; instances without that port are not endpoints.
	TargetPortName string
}

// Instance is one running workload instance: a pod, or one address of a
// Workload.
type Instance struct {
	Namespace string
	// Name is the pod name, or "<workload>-<i>" for a Workload.
	Name string
	// Workload is the name of what runs the instance (a Workload, or a pod's
	// owning Deployment/StatefulSet/...); it becomes the "workload" label.
	Workload       string
	Labels         map[string]string
	ServiceAccount string
	// IP is the instance's address; an instance without one is never an
	// endpoint.
	IP netip.Addr
	// Ports are its named ports (name -> number).
	Ports  map[string]uint16
	Ready  bool
	Meshed bool
	// External marks an instance that is no pod: an address of a Workload
	// (a VM, a process on a machine). A service's selector picks external
	// instances even when the service has EndpointSlices, since
	// Kubernetes' slices list pods only.
	External bool
	// DefaultInboundPolicy is the instance's skein.io/default-inbound-policy
	// annotation (pod or Workload); empty when unset.
	DefaultInboundPolicy string
	// ProbePaths are its HTTP GET probes (kubelet's readiness, liveness and
	// startup probes; a Workload's readinessProbe): the inbound policy keeps
	// them authorized.
	ProbePaths []ProbePath
	// Annotations are the instance's skein.io/ annotations (pod or
	// Workload): the tap API reads its opt-in to bodies from them.
	Annotations map[string]string
}

// equal reports whether i and o say the same.
func (i Instance) equal(o Instance) bool {
	return i.Namespace == o.Namespace && i.Name == o.Name && i.Workload == o.Workload &&
		i.ServiceAccount == o.ServiceAccount && i.IP == o.IP && i.Ready == o.Ready &&
		i.Meshed == o.Meshed && i.External == o.External && i.DefaultInboundPolicy == o.DefaultInboundPolicy &&
		maps.Equal(i.Labels, o.Labels) && maps.Equal(i.Ports, o.Ports) && maps.Equal(i.Annotations, o.Annotations) && slices.Equal(i.ProbePaths, o.ProbePaths)
}

// EndpointSlice is an explicit endpoint list for one service, as Kubernetes
// keeps them. When a service has slices they are the truth for its pod
// endpoints: its selector then only adds External instances.
type EndpointSlice struct {
	Namespace string
	Name      string
	// Service is the name of the service in the same namespace.
	Service   string
	Ports     []SlicePort
	Endpoints []SliceEndpoint
}

// SlicePort maps a service port name to the port endpoints listen on.
type SlicePort struct {
	Name string
	Port uint16
}

// SliceEndpoint is one entry of an EndpointSlice.
type SliceEndpoint struct {
	Addresses []netip.Addr
	Ready     bool
	// Pod is the name of the pod (same namespace) behind the addresses, if
	// known; it gives the endpoint its identity and labels. Without it the
	// instance is looked up by address.
	Pod string
}

// Snapshot is the whole state one source contributes.
type Snapshot struct {
	Services       []Service
	Instances      []Instance
	EndpointSlices []EndpointSlice
	// HTTPRoutes and GRPCRoutes are Gateway API routes as read; the policy
	// compiler validates them and attaches those whose parentRefs name a
	// Service (GAMMA).
	HTTPRoutes []*gatewayv1.HTTPRoute
	GRPCRoutes []*gatewayv1.GRPCRoute
	// The policy.skein.io objects as read, and namespaces with their
	// annotations; internal/controller/inbound validates and compiles them.
	Servers                []*policyv1.Server
	AuthorizationPolicies  []*policyv1.AuthorizationPolicy
	MeshTLSAuthentications []*policyv1.MeshTLSAuthentication
	NetworkAuthentications []*policyv1.NetworkAuthentication
	Namespaces             []Namespace
}

// OpaquePortsAnnotation lists ports (and ranges) that carry opaque TCP.
const OpaquePortsAnnotation = "skein.io/opaque-ports"

// ParseOpaquePorts parses the value of the skein.io/opaque-ports annotation:
// comma-separated ports and inclusive ranges ("3306,5432-5434"). The result
// is sorted and free of duplicates.
func ParseOpaquePorts(value string) ([]uint16, error) {
	var ports []uint16
	for part := range strings.SplitSeq(value, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("opaque ports %q: %w", part, err)
		}
		last := first
		if isRange {
			if last, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("opaque ports %q: %w", part, err)
			}
			if last < first {
				return nil, fmt.Errorf("opaque ports %q: range ends before it starts", part)
			}
		}
		for p := int(first); p <= int(last); p++ {
			ports = append(ports, uint16(p))
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports), nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint16(n), nil
}
