package files

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"log/slog"
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/controller/inbound"
	"github.com/skeinmesh/skein/internal/controller/policy"
	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/source"
)

// ManifestError is a problem with one object of one file.
type ManifestError struct {
	File string
	// Document is the 1-based index of the YAML document in the file.
	Document int
	// Kind, Namespace and Name say which object, as far as known.
	Kind, Namespace, Name string
	// Field is the path of the field at fault, if any.
	Field string
	Err   error
}

func (e *ManifestError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: document %d", e.File, e.Document)
	switch {
	case e.Namespace == "" && e.Name != "": // a cluster-scoped kind
		fmt.Fprintf(&b, " (%s %s)", e.Kind, e.Name)
	case e.Kind != "" || e.Name != "":
		fmt.Fprintf(&b, " (%s %s/%s)", e.Kind, e.Namespace, e.Name)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *ManifestError) Unwrap() error { return e.Err }

// object is one decoded manifest and where it came from.
type object struct {
	file       string
	document   int
	apiVersion string
	kind       string
	meta       *metav1.ObjectMeta
	service    *corev1.Service
	workload   *v1alpha1.Workload
	httpRoute  *gatewayv1.HTTPRoute
	grpcRoute  *gatewayv1.GRPCRoute
	namespace  *corev1.Namespace
	// One of the policy.skein.io kinds, validated by the inbound compiler.
	server   *policyv1.Server
	authzPol *policyv1.AuthorizationPolicy
	meshTLS  *policyv1.MeshTLSAuthentication
	network  *policyv1.NetworkAuthentication
	ignored  *ignoredObject // a kind that is read and checked, then left out
}

func (o *object) fail(field string, err error) *ManifestError {
	return &ManifestError{File: o.file, Document: o.document, Kind: o.kind, Namespace: o.meta.Namespace, Name: o.meta.Name, Field: field, Err: err}
}

// failFields turns joined *v1alpha1.FieldError values into ManifestErrors.
func (o *object) failFields(err error) []error {
	var errs []error
	for _, e := range unjoin(err) {
		var fe *v1alpha1.FieldError
		if errors.As(e, &fe) {
			errs = append(errs, o.fail(fe.Field, errors.New(fe.Problem)))
		} else {
			errs = append(errs, o.fail("", e))
		}
	}
	return errs
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Load reads and validates every *.yaml and *.yml file of dir (not
// subdirectories) and returns the model state they describe, and the
// documents it left out (kinds that mean nothing here, see ignoredKinds).
// Nothing is returned unless everything is valid; the error then lists
// every problem found, each a *ManifestError.
func Load(dir string) (model.Snapshot, []Ignored, error) {
	objects, errs := readObjects(dir)
	snap, convErrs := snapshot(objects)
	errs = append(errs, convErrs...)
	if len(errs) > 0 {
		return model.Snapshot{}, nil, errors.Join(errs...)
	}
	return snap, ignoredOf(objects), nil
}

// readObjects decodes every manifest of path: a file, or the *.yaml and
// *.yml files of a directory (not its subdirectories).
func readObjects(path string) ([]*object, []error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, []error{fmt.Errorf("reading manifests: %w", err)}
	}
	files := []string{path}
	if info.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, []error{fmt.Errorf("reading manifest directory: %w", err)}
		}
		files = files[:0]
		for _, e := range entries {
			if !e.IsDir() && isManifest(e.Name()) {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	var objects []*object
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading manifest: %w", err))
			continue
		}
		objs, fileErrs := decodeFile(f, data)
		objects = append(objects, objs...)
		errs = append(errs, fileErrs...)
	}
	return objects, errs
}

func isManifest(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false // editors' swap and backup files
	}
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

var documentSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

func decodeFile(path string, data []byte) ([]*object, []error) {
	var objects []*object
	var errs []error
	for i, doc := range documentSeparator.Split(string(data), -1) {
		obj, err := decodeDocument(path, i+1, []byte(doc))
		if err != nil {
			errs = append(errs, err)
		} else if obj != nil {
			objects = append(objects, obj)
		}
	}
	return objects, errs
}

// decodeDocument decodes one YAML document strictly; an empty document is
// (nil, nil).
func decodeDocument(path string, index int, doc []byte) (*object, error) {
	fail := func(field string, err error) error {
		return &ManifestError{File: path, Document: index, Field: field, Err: err}
	}
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fail("", err)
	}
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil, nil
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, fail("", fmt.Errorf("not an object: %w", err))
	}
	obj := &object{file: path, document: index, apiVersion: tm.APIVersion, kind: tm.Kind}
	var into any
	switch kind := tm.APIVersion + " " + tm.Kind; {
	case kind == "v1 Service":
		obj.service = &corev1.Service{}
		obj.meta, into = &obj.service.ObjectMeta, obj.service
	case tm.APIVersion == v1alpha1.GroupVersion.String() && tm.Kind == v1alpha1.WorkloadKind:
		obj.workload = &v1alpha1.Workload{}
		obj.meta, into = &obj.workload.ObjectMeta, obj.workload
	case kind == gatewayv1.GroupVersion.String()+" HTTPRoute":
		obj.httpRoute = &gatewayv1.HTTPRoute{}
		obj.meta, into = &obj.httpRoute.ObjectMeta, obj.httpRoute
	case kind == gatewayv1.GroupVersion.String()+" GRPCRoute":
		obj.grpcRoute = &gatewayv1.GRPCRoute{}
		obj.meta, into = &obj.grpcRoute.ObjectMeta, obj.grpcRoute
	case kind == "v1 Namespace":
		obj.namespace = &corev1.Namespace{}
		obj.meta, into = &obj.namespace.ObjectMeta, obj.namespace
	case tm.APIVersion == policyv1.GroupVersion.String() && tm.Kind == policyv1.ServerKind:
		obj.server = &policyv1.Server{}
		obj.meta, into = &obj.server.ObjectMeta, obj.server
	case tm.APIVersion == policyv1.GroupVersion.String() && tm.Kind == policyv1.AuthorizationPolicyKind:
		obj.authzPol = &policyv1.AuthorizationPolicy{}
		obj.meta, into = &obj.authzPol.ObjectMeta, obj.authzPol
	case tm.APIVersion == policyv1.GroupVersion.String() && tm.Kind == policyv1.MeshTLSAuthenticationKind:
		obj.meshTLS = &policyv1.MeshTLSAuthentication{}
		obj.meta, into = &obj.meshTLS.ObjectMeta, obj.meshTLS
	case tm.APIVersion == policyv1.GroupVersion.String() && tm.Kind == policyv1.NetworkAuthenticationKind:
		obj.network = &policyv1.NetworkAuthentication{}
		obj.meta, into = &obj.network.ObjectMeta, obj.network
	case ignoredKinds[kind].newObject != nil:
		// Decoded strictly all the same: a typo in it is still a typo.
		obj.ignored = ignoredKinds[kind].newObject()
		obj.meta, into = obj.ignored.meta, obj.ignored.object
	case runKinds[kind]:
		return nil, fail("kind", fmt.Errorf("%s is not run here: describe the process as a %s %s (spec.command, spec.replicas)",
			kind, v1alpha1.GroupVersion, v1alpha1.WorkloadKind))
	default:
		return nil, fail("kind", fmt.Errorf("unknown kind %q of apiVersion %q (known: v1 Service, v1 Namespace, %s %s, %s HTTPRoute and GRPCRoute, %s Server, AuthorizationPolicy, MeshTLSAuthentication and NetworkAuthentication; ignored: %s)",
			tm.Kind, tm.APIVersion, v1alpha1.GroupVersion, v1alpha1.WorkloadKind, gatewayv1.GroupVersion, policyv1.GroupVersion, strings.Join(ignoredKindNames(), ", ")))
	}
	field, err := decodeStrict(data, into)
	if obj.meta.Namespace == "" && obj.namespace == nil && (obj.ignored == nil || obj.ignored.namespaced) {
		obj.meta.Namespace = "default"
	}
	if err != nil {
		return nil, obj.fail(field, err)
	}
	if obj.meta.Name == "" {
		return nil, obj.fail("metadata.name", errors.New("is required"))
	}
	return obj, nil
}

var unknownField = regexp.MustCompile(`^unknown field "(.*)"$`)

// decodeStrict decodes case-sensitively and rejects unknown and duplicate
// fields, and says which field is at fault when it can.
func decodeStrict(data []byte, into any) (field string, err error) {
	strictErrs, err := kjson.UnmarshalStrict(data, into, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		// encoding/json reports the path of a type error; sigs.k8s.io/json
		// keeps its error type internal.
		var typeErr *json.UnmarshalTypeError
		if errors.As(json.Unmarshal(data, into), &typeErr) {
			return typeErr.Field, fmt.Errorf("cannot use a %s as %s", typeErr.Value, typeErr.Type)
		}
		return "", err
	}
	if len(strictErrs) == 0 {
		return "", nil
	}
	var fe kjson.FieldError
	if !errors.As(strictErrs[0], &fe) {
		return "", strictErrs[0]
	}
	if unknownField.MatchString(fe.Error()) {
		return fe.FieldPath(), errors.New("unknown field")
	}
	return fe.FieldPath(), fe
}

// snapshot converts the decoded objects and checks what needs several of
// them: unique names, named target ports that the selected workloads have.
func snapshot(objects []*object) (model.Snapshot, []error) {
	var snap model.Snapshot
	var errs []error
	seen := map[string]*object{}
	var services, routes []*object
	var workloads []*v1alpha1.Workload
	for _, o := range objects {
		if o.ignored != nil {
			// Every file of a set may start with the same Namespace.
			continue
		}
		id := o.kind + " " + o.meta.Namespace + "/" + o.meta.Name
		if first, dup := seen[id]; dup && o.namespace != nil && maps.Equal(skeinAnnotations(first.meta), skeinAnnotations(o.meta)) {
			continue // every file of a set may start with the same Namespace
		} else if dup {
			errs = append(errs, o.fail("metadata.name", fmt.Errorf("%s is also defined in %s document %d", id, first.file, first.document)))
			continue
		}
		seen[id] = o
		switch {
		case o.service != nil:
			svc, err := source.Service(o.service)
			if err != nil {
				errs = append(errs, o.failFields(err)...)
				continue
			}
			errs = append(errs, o.failPolicy(policy.ValidateServiceAnnotations(&svc))...)
			snap.Services = append(snap.Services, svc)
			services = append(services, o)
		case o.workload != nil:
			instances, err := source.WorkloadInstances(o.workload)
			if err != nil {
				errs = append(errs, o.failFields(err)...)
				continue
			}
			snap.Instances = append(snap.Instances, instances...)
			workloads = append(workloads, o.workload)
		case o.httpRoute != nil:
			snap.HTTPRoutes = append(snap.HTTPRoutes, o.httpRoute)
			routes = append(routes, o)
		case o.grpcRoute != nil:
			snap.GRPCRoutes = append(snap.GRPCRoutes, o.grpcRoute)
			routes = append(routes, o)
		case o.namespace != nil:
			snap.Namespaces = append(snap.Namespaces, model.Namespace{Name: o.meta.Name, Annotations: skeinAnnotations(o.meta)})
		case o.server != nil:
			snap.Servers = append(snap.Servers, o.server)
		case o.authzPol != nil:
			snap.AuthorizationPolicies = append(snap.AuthorizationPolicies, o.authzPol)
		case o.meshTLS != nil:
			snap.MeshTLSAuthentications = append(snap.MeshTLSAuthentications, o.meshTLS)
		case o.network != nil:
			snap.NetworkAuthentications = append(snap.NetworkAuthentications, o.network)
		}
	}
	for _, o := range services {
		errs = append(errs, checkTargetPortNames(o, workloads)...)
	}
	routeErrs := checkRoutes(routes, snap.Services)
	errs = append(errs, routeErrs...)
	reported := map[string]bool{}
	for _, e := range routeErrs {
		var me *ManifestError
		if errors.As(e, &me) {
			reported[me.Kind+" "+me.Namespace+"/"+me.Name+": "+me.Field+": "+me.Err.Error()] = true
		}
	}
	errs = append(errs, checkInbound(snap, seen, reported)...)
	return snap, errs
}

// skeinAnnotations are an object's skein.io/ annotations: the ones the
// model keeps.
func skeinAnnotations(m *metav1.ObjectMeta) map[string]string {
	var out map[string]string
	for k, v := range m.Annotations {
		if strings.HasPrefix(k, "skein.io/") {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// checkInbound validates the authorization policy objects, namespace and
// workload annotations as the controller's inbound compiler will, against
// the rest of the directory (an AuthorizationPolicy naming a
// MeshTLSAuthentication that is not there is an error here).
func checkInbound(snap model.Snapshot, byID map[string]*object, reported map[string]bool) []error {
	in := model.InboundInputs{
		TrustDomain: "cluster.local", Instances: snap.Instances, Namespaces: snap.Namespaces,
		Servers: snap.Servers, AuthorizationPolicies: snap.AuthorizationPolicies,
		MeshTLSAuthentications: snap.MeshTLSAuthentications, NetworkAuthentications: snap.NetworkAuthentications,
		HTTPRoutes: snap.HTTPRoutes, GRPCRoutes: snap.GRPCRoutes,
	}
	var errs []error
	for _, e := range inbound.NewCompiler(inbound.Config{}, slog.New(slog.DiscardHandler)).Update(in).Errors {
		kind := e.Kind
		if kind == "Pod" {
			kind = v1alpha1.WorkloadKind
		}
		o := byID[kind+" "+e.Namespace+"/"+e.Name]
		if o == nil && kind == v1alpha1.WorkloadKind {
			o = workloadOfInstance(byID, e.Namespace, e.Name)
		}
		if o == nil {
			errs = append(errs, e)
			continue
		}
		// A route with a Service and a Server parent may have had its
		// matches reported by checkRoutes already.
		if (e.Kind == "HTTPRoute" || e.Kind == "GRPCRoute") && reported[e.Error()] {
			continue
		}
		errs = append(errs, o.fail(e.Field, errors.New(e.Problem)))
	}
	return errs
}

// workloadOfInstance finds the Workload an instance ("<workload>-<i>")
// belongs to.
func workloadOfInstance(byID map[string]*object, namespace, instance string) *object {
	for _, o := range byID {
		if o.workload != nil && o.meta.Namespace == namespace && strings.HasPrefix(instance, o.meta.Name+"-") {
			return o
		}
	}
	return nil
}

// checkRoutes validates the routes as the controller's policy compiler
// will, against the Services of the same directory (a backend that is not
// there is an error here, not a route that half works).
func checkRoutes(routes []*object, services []model.Service) []error {
	refs := make([]*model.Service, len(services))
	for i := range services {
		refs[i] = &services[i]
	}
	var errs []error
	for _, o := range routes {
		if o.httpRoute != nil {
			errs = append(errs, o.failPolicy(policy.ValidateHTTPRoute(o.httpRoute, refs, policyClusterDomain))...)
		} else {
			errs = append(errs, o.failPolicy(policy.ValidateGRPCRoute(o.grpcRoute, refs, policyClusterDomain))...)
		}
	}
	return errs
}

// policyClusterDomain only shapes the backend authorities validation
// builds and throws away; no error depends on it.
const policyClusterDomain = "cluster.local"

// failPolicy turns the policy compiler's errors into ManifestErrors.
func (o *object) failPolicy(perrs []*policy.Error) []error {
	var errs []error
	for _, e := range perrs {
		errs = append(errs, o.fail(e.Field, errors.New(e.Problem)))
	}
	return errs
}

// checkTargetPortNames catches a named targetPort that no workload the
// service selects declares: in a directory that is a typo, not a rollout in
// progress.
func checkTargetPortNames(o *object, workloads []*v1alpha1.Workload) []error {
	var selected []*v1alpha1.Workload
	for _, w := range workloads {
		if w.Namespace == o.meta.Namespace && len(o.service.Spec.Selector) > 0 && matches(o.service.Spec.Selector, w.Labels) {
			selected = append(selected, w)
		}
	}
	if len(selected) == 0 {
		return nil
	}
	var errs []error
	for i, p := range o.service.Spec.Ports {
		name := p.TargetPort.StrVal
		if name == "" {
			continue
		}
		declared := slices.ContainsFunc(selected, func(w *v1alpha1.Workload) bool {
			return slices.ContainsFunc(w.Spec.Ports, func(wp v1alpha1.WorkloadPort) bool { return wp.Name == name })
		})
		if !declared {
			errs = append(errs, o.fail(fmt.Sprintf("spec.ports[%d].targetPort", i), fmt.Errorf("no selected Workload has a port named %q", name)))
		}
	}
	return errs
}

func matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
