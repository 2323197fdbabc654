package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// WorkloadKind is the kind name of Workload in manifests.
const WorkloadKind = "Workload"

// Workload is an application that runs outside Kubernetes: processes that
// `skein up` starts on one machine, or a VM that joins the mesh. Each entry
// of spec.addresses is one running instance.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=".spec.replicas"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type Workload struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec WorkloadSpec `json:"spec"`
}

// WorkloadSpec describes how to run a Workload and where its instances are.
type WorkloadSpec struct {
	// ServiceAccountName is the identity's service account; "default" when
	// empty.
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// Replicas is how many instances `skein up` runs; 1 when unset.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Command is the program and its arguments.
	// +optional
	Command []string `json:"command,omitempty"`

	// +optional
	Env []EnvVar `json:"env,omitempty"`

	// Ports the application listens on; services refer to them by name.
	// +optional
	Ports []WorkloadPort `json:"ports,omitempty"`

	// ReadinessProbe tells `skein up` when an instance may take traffic.
	// +optional
	ReadinessProbe *Probe `json:"readinessProbe,omitempty"`

	// Inject says whether the instances run with a skein-proxy sidecar;
	// true when unset.
	// +kubebuilder:default=true
	// +optional
	Inject *bool `json:"inject,omitempty"`

	// Addresses holds one IP per running instance. `skein up` fills it in
	// the manifests it hands the controller; a VM lists its own IP.
	// +optional
	Addresses []string `json:"addresses,omitempty"`

	// NotReadyAddresses are those of Addresses whose instance runs but is
	// not ready: the controller knows it (its identity, its inbound
	// policy, which its readiness probe must pass) but sends it no
	// traffic. `skein up` fills it in.
	// +optional
	NotReadyAddresses []string `json:"notReadyAddresses,omitempty"`
}

// EnvVar is one environment variable of the workload's process.
type EnvVar struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +optional
	Value string `json:"value,omitempty"`
}

// WorkloadPort is one port the application listens on.
type WorkloadPort struct {
	// +optional
	Name string `json:"name,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	ContainerPort int32 `json:"containerPort"`
	// Protocol is TCP (the default) or UDP.
	// +kubebuilder:validation:Enum=TCP;UDP
	// +optional
	Protocol string `json:"protocol,omitempty"`
}

// Probe is a readiness check: exactly one of HTTPGet and TCPSocket.
//
// +kubebuilder:validation:XValidation:rule="has(self.httpGet) != has(self.tcpSocket)",message="needs exactly one of httpGet and tcpSocket"
type Probe struct {
	// +optional
	HTTPGet *HTTPGetAction `json:"httpGet,omitempty"`
	// +optional
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"`
}

// HTTPGetAction probes with an HTTP GET; 2xx and 3xx mean ready.
type HTTPGetAction struct {
	// +optional
	Path string `json:"path,omitempty"`
	// Port is a number or the name of one of spec.ports.
	Port intstr.IntOrString `json:"port"`
}

// TCPSocketAction probes by opening a TCP connection.
type TCPSocketAction struct {
	// Port is a number or the name of one of spec.ports.
	Port intstr.IntOrString `json:"port"`
}

// WorkloadList is a list of Workloads, as the Kubernetes API returns them.
//
// +kubebuilder:object:root=true
type WorkloadList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Workload `json:"items"`
}

// ReplicaCount is spec.replicas with its default applied.
func (s *WorkloadSpec) ReplicaCount() int32 {
	if s.Replicas == nil {
		return 1
	}
	return *s.Replicas
}

// Injected is spec.inject with its default applied.
func (s *WorkloadSpec) Injected() bool {
	return s.Inject == nil || *s.Inject
}

// ServiceAccount is spec.serviceAccountName with its default applied.
func (s *WorkloadSpec) ServiceAccount() string {
	if s.ServiceAccountName == "" {
		return "default"
	}
	return s.ServiceAccountName
}
