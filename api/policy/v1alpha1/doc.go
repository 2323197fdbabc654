// Package v1alpha1 holds the Go types of Skein's authorization policy
// resources, API group policy.skein.io, version v1alpha1: Server,
// AuthorizationPolicy, MeshTLSAuthentication and NetworkAuthentication,
// with Linkerd's field names (policy.linkerd.io). The same types are read
// from `skein up` manifests and served as Kubernetes CRDs generated from
// them with controller-gen. Validate checks what one object means on its
// own; what needs other objects (a port name the selected pods have, a
// target that exists) is checked by the compiler
// (internal/controller/inbound).
//
// +kubebuilder:object:generate=true
// +groupName=policy.skein.io
package v1alpha1
