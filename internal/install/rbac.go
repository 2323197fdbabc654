package install

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// watchOnly is what an informer needs: list, then watch.
var watchOnly = []string{"list", "watch"}

// rbacObjects are the controller's ServiceAccount and what it may do, no
// more than it uses: its informers list and watch services, pods,
// endpoint slices, Workloads, policy.skein.io resources and Gateway API HTTPRoutes and
// GRPCRoutes (the model) and namespaces (the injector); the identity service creates TokenReviews; and it reads and
// watches only its own issuer Secret. It writes nothing, and reads no
// other Secret.
func rbacObjects(cfg Config) []runtime.Object {
	sa := &corev1.ServiceAccount{TypeMeta: typeMeta("v1", "ServiceAccount"), ObjectMeta: objectMeta(cfg, ControllerName)}
	clusterRole := &rbacv1.ClusterRole{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"),
		ObjectMeta: clusterObjectMeta(ControllerName),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services", "pods", "namespaces"}, Verbs: watchOnly},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: watchOnly},
			{APIGroups: []string{"skein.io"}, Resources: []string{"workloads"}, Verbs: watchOnly},
			{APIGroups: []string{"policy.skein.io"}, Resources: []string{"servers", "authorizationpolicies", "meshtlsauthentications", "networkauthentications"}, Verbs: watchOnly},
			{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"httproutes", "grpcroutes"}, Verbs: watchOnly},
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		},
	}
	clusterBinding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
		ObjectMeta: clusterObjectMeta(ControllerName),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: ControllerName},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: ControllerName, Namespace: cfg.Namespace}},
	}
	// Only the issuer, by name: the controller gets it, then watches it
	// with a metadata.name field selector, which resourceNames allows.
	role := &rbacv1.Role{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "Role"),
		ObjectMeta: objectMeta(cfg, ControllerName),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{IssuerSecretName}, Verbs: []string{"get", "watch"}},
		},
	}
	binding := &rbacv1.RoleBinding{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"),
		ObjectMeta: objectMeta(cfg, ControllerName),
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: ControllerName},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: ControllerName, Namespace: cfg.Namespace}},
	}
	return []runtime.Object{sa, clusterRole, clusterBinding, role, binding}
}
