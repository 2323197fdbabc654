package files

import (
	"errors"

	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/api/v1alpha1"
)

// Manifests are the objects of a set of manifest files, validated as Load
// validates them.
type Manifests struct {
	Services  []*corev1.Service
	Workloads []*v1alpha1.Workload
	// HTTPRoutes and GRPCRoutes are the Gateway API routes (validated as
	// the controller's policy compiler validates them).
	HTTPRoutes []*gatewayv1.HTTPRoute
	GRPCRoutes []*gatewayv1.GRPCRoute
	// Namespaces (for their skein.io/ annotations) and the policy.skein.io
	// objects, validated as the controller's inbound compiler validates
	// them; each has its TypeMeta set.
	Namespaces             []*corev1.Namespace
	Servers                []*policyv1.Server
	AuthorizationPolicies  []*policyv1.AuthorizationPolicy
	MeshTLSAuthentications []*policyv1.MeshTLSAuthentication
	NetworkAuthentications []*policyv1.NetworkAuthentication
	// Ignored are the documents left out: kinds that mean nothing here.
	Ignored []Ignored
	// Origin says where each object was defined, for messages about it,
	// keyed by Key.
	Origin map[string]Origin
}

// Origin is where an object was defined.
type Origin struct {
	File     string
	Document int
}

// Key names an object for Manifests.Origin: "Kind namespace/name".
func Key(kind, namespace, name string) string { return kind + " " + namespace + "/" + name }

// Fail returns an error about the field of the object named by key, in the
// same form as the errors of Load.
func (m *Manifests) Fail(kind, namespace, name, field string, err error) error {
	o := m.Origin[Key(kind, namespace, name)]
	return &ManifestError{File: o.File, Document: o.Document, Kind: kind, Namespace: namespace, Name: name, Field: field, Err: err}
}

// Read reads and validates path, a manifest file or a directory of them,
// and returns its objects. Nothing is returned unless everything is valid.
func Read(path string) (*Manifests, error) {
	objects, errs := readObjects(path)
	_, convErrs := snapshot(objects)
	if errs = append(errs, convErrs...); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m := &Manifests{Origin: map[string]Origin{}, Ignored: ignoredOf(objects)}
	for _, o := range objects {
		if o.ignored != nil {
			continue
		}
		key := Key(o.kind, o.meta.Namespace, o.meta.Name)
		if _, dup := m.Origin[key]; dup {
			continue // a Namespace repeated at the top of several files
		}
		m.Origin[key] = Origin{File: o.file, Document: o.document}
		switch {
		case o.service != nil:
			m.Services = append(m.Services, o.service)
		case o.workload != nil:
			m.Workloads = append(m.Workloads, o.workload)
		case o.httpRoute != nil:
			m.HTTPRoutes = append(m.HTTPRoutes, o.httpRoute)
		case o.grpcRoute != nil:
			m.GRPCRoutes = append(m.GRPCRoutes, o.grpcRoute)
		case o.namespace != nil:
			m.Namespaces = append(m.Namespaces, o.namespace)
		case o.server != nil:
			m.Servers = append(m.Servers, o.server)
		case o.authzPol != nil:
			m.AuthorizationPolicies = append(m.AuthorizationPolicies, o.authzPol)
		case o.meshTLS != nil:
			m.MeshTLSAuthentications = append(m.MeshTLSAuthentications, o.meshTLS)
		case o.network != nil:
			m.NetworkAuthentications = append(m.NetworkAuthentications, o.network)
		}
	}
	return m, nil
}
