package kube

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/source"
)

// The policy.skein.io resources the source reads.
var (
	ServersResource                = policyv1.GroupVersion.WithResource(policyv1.ServerResource)
	AuthorizationPoliciesResource  = policyv1.GroupVersion.WithResource(policyv1.AuthorizationPolicyResource)
	MeshTLSAuthenticationsResource = policyv1.GroupVersion.WithResource(policyv1.MeshTLSAuthenticationResource)
	NetworkAuthenticationsResource = policyv1.GroupVersion.WithResource(policyv1.NetworkAuthenticationResource)
)

// setPolicy converts an unstructured policy.skein.io object and writes it.
// Validation is the inbound compiler's (it names the field and keeps the
// last good version); an object that does not even convert is left out
// with a warning, and its previous version, if any, stays.
func setPolicy[T any](s *Source, set func(*model.Writer, *T)) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) {
		obj := new(T)
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj); err != nil {
			s.log.Warn("ignoring policy object that does not convert", "kind", u.GetKind(), "object", u.GetNamespace()+"/"+u.GetName(), "err", err)
			return
		}
		set(s.model, obj)
	}
}

func (s *Source) setNamespace(ns *corev1.Namespace) {
	s.model.SetNamespace(model.Namespace{Name: ns.Name, Annotations: source.SkeinAnnotations(ns.Annotations)})
}
