// Package v1alpha1 holds the Go types of Skein's own resources, API group
// skein.io, version v1alpha1. The same types are read from YAML manifests
// (the local mesh, VMs) and, later, served as Kubernetes CRDs generated from
// them with controller-gen. Validation that needs more than one object lives
// with the sources, not here.
//
// +kubebuilder:object:generate=true
// +groupName=skein.io
package v1alpha1
