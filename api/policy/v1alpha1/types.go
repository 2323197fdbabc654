package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// DefaultPolicyAnnotation sets the default inbound policy of a pod, a
// Workload or a namespace: all-unauthenticated, all-authenticated,
// cluster-authenticated, cluster-unauthenticated, deny or audit.
const DefaultPolicyAnnotation = "skein.io/default-inbound-policy"

// Server selects a port of a set of pods (or Workload instances). Once a
// Server selects a port, traffic to it is denied unless an
// AuthorizationPolicy allows it or spec.accessPolicy says otherwise.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=srv
// +kubebuilder:printcolumn:name="Port",type=string,JSONPath=".spec.port"
// +kubebuilder:printcolumn:name="Protocol",type=string,JSONPath=".spec.proxyProtocol"
// +kubebuilder:printcolumn:name="Access",type=string,JSONPath=".spec.accessPolicy"
type Server struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ServerSpec `json:"spec"`
}

// ServerSpec is what a Server selects and how it treats what no policy
// authorizes.
type ServerSpec struct {
	// PodSelector selects the pods (or Workload instances) in the Server's
	// namespace; an empty selector selects them all.
	PodSelector metav1.LabelSelector `json:"podSelector"`

	// Port is a port number or the name of a port of the selected pods.
	Port intstr.IntOrString `json:"port"`

	// ProxyProtocol is a hint: unknown (detect), HTTP/1, HTTP/2, gRPC,
	// opaque or TLS.
	// +kubebuilder:validation:Enum=unknown;HTTP/1;HTTP/2;gRPC;opaque;TLS
	// +optional
	ProxyProtocol string `json:"proxyProtocol,omitempty"`

	// AccessPolicy applies to traffic no AuthorizationPolicy allows; deny
	// when unset.
	// +kubebuilder:validation:Enum=all-unauthenticated;all-authenticated;cluster-authenticated;cluster-unauthenticated;deny;audit
	// +optional
	AccessPolicy string `json:"accessPolicy,omitempty"`

	// RateLimit is the Server's local rate limit, per proxy.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
}

// RateLimit bounds requests per second to a Server: all of them, each
// client identity's (unmeshed clients share one), and listed clients'
// own.
type RateLimit struct {
	// +optional
	Total *Limit `json:"total,omitempty"`
	// +optional
	Identity *Limit `json:"identity,omitempty"`
	// +optional
	Overrides []RateLimitOverride `json:"overrides,omitempty"`
}

// Limit is a number of requests per second.
type Limit struct {
	// +kubebuilder:validation:Minimum=1
	RequestsPerSecond int32 `json:"requestsPerSecond"`
}

// RateLimitOverride gives the clients it names a limit of their own.
type RateLimitOverride struct {
	// +kubebuilder:validation:Minimum=1
	RequestsPerSecond int32 `json:"requestsPerSecond"`
	// ClientRefs are ServiceAccounts.
	// +kubebuilder:validation:MinItems=1
	ClientRefs []NamespacedRef `json:"clientRefs"`
}

// ServerList is a list of Servers, as the Kubernetes API returns them.
//
// +kubebuilder:object:root=true
type ServerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Server `json:"items"`
}

// AuthorizationPolicy allows the clients that match all of its required
// authentications to reach its target.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=authzpolicy
// +kubebuilder:printcolumn:name="Target Kind",type=string,JSONPath=".spec.targetRef.kind"
// +kubebuilder:printcolumn:name="Target Name",type=string,JSONPath=".spec.targetRef.name"
type AuthorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec AuthorizationPolicySpec `json:"spec"`
}

// AuthorizationPolicySpec names what is authorized and who.
type AuthorizationPolicySpec struct {
	// TargetRef is a Server (group policy.skein.io), an HTTPRoute or
	// GRPCRoute (group gateway.networking.k8s.io) whose parent is a
	// Server, or a Namespace (group "": every Server in it), all in the
	// policy's namespace.
	TargetRef LocalRef `json:"targetRef"`
	// RequiredAuthenticationRefs must all match the client:
	// MeshTLSAuthentication and NetworkAuthentication (group
	// policy.skein.io) or a ServiceAccount (group "").
	// +kubebuilder:validation:MinItems=1
	RequiredAuthenticationRefs []NamespacedRef `json:"requiredAuthenticationRefs"`
}

// AuthorizationPolicyList is a list of AuthorizationPolicies.
//
// +kubebuilder:object:root=true
type AuthorizationPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AuthorizationPolicy `json:"items"`
}

// MeshTLSAuthentication matches meshed clients by identity.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=meshtlsauthn
type MeshTLSAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec MeshTLSAuthenticationSpec `json:"spec"`
}

// MeshTLSAuthenticationSpec lists identities, by name or by reference:
// exactly one of the two.
type MeshTLSAuthenticationSpec struct {
	// Identities are SPIFFE IDs, "*" for any meshed client, or "*.suffix"
	// for any identity ending in ".suffix".
	// +optional
	Identities []string `json:"identities,omitempty"`
	// IdentityRefs are ServiceAccounts and Namespaces (every service
	// account in it), group "".
	// +optional
	IdentityRefs []NamespacedRef `json:"identityRefs,omitempty"`
}

// MeshTLSAuthenticationList is a list of MeshTLSAuthentications.
//
// +kubebuilder:object:root=true
type MeshTLSAuthenticationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshTLSAuthentication `json:"items"`
}

// NetworkAuthentication matches clients by source address.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=netauthn
type NetworkAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec NetworkAuthenticationSpec `json:"spec"`
}

// NetworkAuthenticationSpec lists the networks clients may come from.
type NetworkAuthenticationSpec struct {
	// +kubebuilder:validation:MinItems=1
	Networks []Network `json:"networks"`
}

// Network is a CIDR without its exceptions.
type Network struct {
	Cidr string `json:"cidr"`
	// +optional
	Except []string `json:"except,omitempty"`
}

// NetworkAuthenticationList is a list of NetworkAuthentications.
//
// +kubebuilder:object:root=true
type NetworkAuthenticationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NetworkAuthentication `json:"items"`
}

// LocalRef names an object in the referring object's namespace.
type LocalRef struct {
	// +optional
	Group string `json:"group,omitempty"`
	// +kubebuilder:validation:MinLength=1
	Kind string `json:"kind"`
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// NamespacedRef names an object, in the referring object's namespace when
// Namespace is empty.
type NamespacedRef struct {
	// +optional
	Group string `json:"group,omitempty"`
	// +kubebuilder:validation:MinLength=1
	Kind string `json:"kind"`
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}
