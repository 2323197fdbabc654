package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the API group of every kind in this package.
const Group = "policy.skein.io"

// GroupVersion is the API group and version of every kind in this package.
var GroupVersion = schema.GroupVersion{Group: Group, Version: "v1alpha1"}

// Kind names, as manifests and refs spell them.
const (
	ServerKind                = "Server"
	AuthorizationPolicyKind   = "AuthorizationPolicy"
	MeshTLSAuthenticationKind = "MeshTLSAuthentication"
	NetworkAuthenticationKind = "NetworkAuthentication"
)

// Resource names (plural, lower case), as the Kubernetes API serves them.
const (
	ServerResource                = "servers"
	AuthorizationPolicyResource   = "authorizationpolicies"
	MeshTLSAuthenticationResource = "meshtlsauthentications"
	NetworkAuthenticationResource = "networkauthentications"
)

var (
	// SchemeBuilder registers this package's kinds with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds this package's kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion,
		&Server{}, &ServerList{},
		&AuthorizationPolicy{}, &AuthorizationPolicyList{},
		&MeshTLSAuthentication{}, &MeshTLSAuthenticationList{},
		&NetworkAuthentication{}, &NetworkAuthenticationList{})
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
