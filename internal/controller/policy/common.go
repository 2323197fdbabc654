package policy

import (
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/routes"
)

// routeBase compiles what HTTPRoutes and GRPCRoutes share: the parents and
// the annotations. It returns nil (and no error) for a route attached to no
// Service: that one is for a gateway, not for the mesh.
func (e *compileEnv) routeBase(ref objectRef, created time.Time, ann map[string]string, parentRefs []gatewayv1.ParentReference) (*compiledRoute, []*Error) {
	r := &compiledRoute{ref: ref, created: created}
	var errs []*Error
	for i, p := range parentRefs {
		if p.Kind == nil || *p.Kind != "Service" || p.Group == nil || *p.Group != "" {
			continue // a Gateway's, or another implementation's
		}
		field := fmt.Sprintf("spec.parentRefs[%d]", i)
		ns := ref.namespace
		if p.Namespace != nil && string(*p.Namespace) != ref.namespace {
			errs = append(errs, ref.fail(field+".namespace", "Service %s/%s is in another namespace: consumer routes are not supported, put the route in the Service's namespace", *p.Namespace, p.Name))
			continue
		}
		key := svcKey{ns, string(p.Name)}
		svc := e.services[key]
		if svc == nil {
			errs = append(errs, ref.fail(field, "Service %s not found", key))
			continue
		}
		pa := parent{svc: key}
		if p.Port != nil {
			pa.port = uint16(*p.Port)
			if !slices.ContainsFunc(svc.Ports, func(sp model.ServicePort) bool { return sp.Port == pa.port }) {
				errs = append(errs, ref.fail(field+".port", "Service %s has no port %d", key, *p.Port))
				continue
			}
		}
		if p.SectionName != nil {
			pa.portName = string(*p.SectionName)
			if !slices.ContainsFunc(svc.Ports, func(sp model.ServicePort) bool { return sp.Name == pa.portName }) {
				errs = append(errs, ref.fail(field+".sectionName", "Service %s has no port named %q", key, pa.portName))
				continue
			}
		}
		r.parents = append(r.parents, pa)
	}
	if len(r.parents) == 0 && len(errs) == 0 {
		return nil, nil
	}
	set, annErrs := parseSettings(ann, false)
	errs = append(errs, ref.annotationErrors(annErrs)...)
	r.settings = set
	return r, errs
}

// backend compiles a backendRef (or a mirror's): a Service in the route's
// namespace. A missing port is left 0: the destination's port fills it in.
func (e *compileEnv) backend(ref objectRef, field string, b gatewayv1.BackendObjectReference) (routes.Backend, *Error) {
	if b.Group != nil && *b.Group != "" {
		return routes.Backend{}, ref.fail(field+".group", "group %q is not supported: backends are core Services (group \"\")", *b.Group)
	}
	if b.Kind != nil && *b.Kind != "Service" {
		return routes.Backend{}, ref.fail(field+".kind", "kind %q is not supported: backends are Services", *b.Kind)
	}
	if b.Namespace != nil && string(*b.Namespace) != ref.namespace {
		return routes.Backend{}, ref.fail(field+".namespace", "Service %s/%s is in another namespace: that needs a ReferenceGrant, which Skein does not read", *b.Namespace, b.Name)
	}
	key := svcKey{ref.namespace, string(b.Name)}
	svc := e.services[key]
	if svc == nil {
		return routes.Backend{}, ref.fail(field, "Service %s not found", key)
	}
	out := routes.Backend{Service: key.String()}
	if b.Port != nil {
		port := uint16(*b.Port)
		if *b.Port < 1 || *b.Port > 65535 || !slices.ContainsFunc(svc.Ports, func(sp model.ServicePort) bool { return sp.Port == port }) {
			return routes.Backend{}, ref.fail(field+".port", "Service %s has no port %d", key, *b.Port)
		}
		out.Port, out.Authority = port, e.authority(key, port)
	}
	return out, nil
}

// weighted compiles one weighted backendRef.
func (e *compileEnv) weighted(ref objectRef, field string, b gatewayv1.BackendRef) (routes.Backend, *Error) {
	out, err := e.backend(ref, field, b.BackendObjectReference)
	if err != nil {
		return out, err
	}
	out.Weight = 1
	if b.Weight != nil {
		if *b.Weight < 0 || *b.Weight > 1_000_000 {
			return out, ref.fail(field+".weight", "%d is not a weight (0-1000000)", *b.Weight)
		}
		out.Weight = uint32(*b.Weight)
	}
	return out, nil
}

// checkWeights rejects backends that are all weight 0: they would send
// nothing anywhere.
func checkWeights(ref objectRef, field string, backends []routes.Backend) *Error {
	if len(backends) == 0 || slices.ContainsFunc(backends, func(b routes.Backend) bool { return b.Weight > 0 }) {
		return nil
	}
	return ref.fail(field, "every backendRef has weight 0: nothing would be sent anywhere")
}

func headerModifier(ref objectRef, field string, f *gatewayv1.HTTPHeaderFilter) (*routes.HeaderModifier, *Error) {
	if f == nil {
		return nil, ref.fail(field, "is missing")
	}
	out := &routes.HeaderModifier{}
	for i, h := range f.Set {
		if err := checkHeaderName(string(h.Name)); err != nil {
			return nil, ref.fail(fmt.Sprintf("%s.set[%d].name", field, i), "%v", err)
		}
		out.Set = append(out.Set, routes.Header{Name: string(h.Name), Value: h.Value})
	}
	for i, h := range f.Add {
		if err := checkHeaderName(string(h.Name)); err != nil {
			return nil, ref.fail(fmt.Sprintf("%s.add[%d].name", field, i), "%v", err)
		}
		out.Add = append(out.Add, routes.Header{Name: string(h.Name), Value: h.Value})
	}
	for i, name := range f.Remove {
		if err := checkHeaderName(name); err != nil {
			return nil, ref.fail(fmt.Sprintf("%s.remove[%d]", field, i), "%v", err)
		}
		out.Remove = append(out.Remove, name)
	}
	return out, nil
}

func checkHeaderName(name string) error {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) }) {
		return fmt.Errorf("%q is not a header name", name)
	}
	return nil
}

// mirror compiles a RequestMirror filter: Percent or Fraction, else all.
func (e *compileEnv) mirror(ref objectRef, field string, f *gatewayv1.HTTPRequestMirrorFilter) (routes.Mirror, *Error) {
	if f == nil {
		return routes.Mirror{}, ref.fail(field, "is missing")
	}
	b, err := e.backend(ref, field+".backendRef", f.BackendRef)
	if err != nil {
		return routes.Mirror{}, err
	}
	b.Weight = 1
	m := routes.Mirror{Backend: b, Percent: 100}
	switch {
	case f.Percent != nil && f.Fraction != nil:
		return m, ref.fail(field, "set percent or fraction, not both")
	case f.Percent != nil:
		if *f.Percent < 0 || *f.Percent > 100 {
			return m, ref.fail(field+".percent", "%d is not a percentage (0-100)", *f.Percent)
		}
		m.Percent = float64(*f.Percent)
	case f.Fraction != nil:
		den := int32(100)
		if f.Fraction.Denominator != nil {
			den = *f.Fraction.Denominator
		}
		if den < 1 || f.Fraction.Numerator < 0 || f.Fraction.Numerator > den {
			return m, ref.fail(field+".fraction", "%d/%d is not a fraction between 0 and 1", f.Fraction.Numerator, den)
		}
		m.Percent = math.Round(float64(f.Fraction.Numerator)/float64(den)*100*1e6) / 1e6
	}
	return m, nil
}

// compileRegex compiles a route's regular expression (RE2 syntax) so that
// it must match the whole value, as Envoy's safe_regex does.
func compileRegex(ref objectRef, field, expr string) (*regexp.Regexp, *Error) {
	re, err := regexp.Compile("^(?:" + expr + ")$")
	if err != nil {
		if _, plain := regexp.Compile(expr); plain != nil {
			err = plain
		}
		return nil, ref.fail(field, "bad regular expression %q: %v", expr, err)
	}
	return re, nil
}

// gatewayDuration parses a Gateway API duration (GEP-2257: "1h", "500ms",
// "0s" for none).
func gatewayDuration(ref objectRef, field string, d *gatewayv1.Duration) (*time.Duration, *Error) {
	if d == nil {
		return nil, nil
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil || v < 0 {
		return nil, ref.fail(field, "%q is not a duration (like 500ms, 10s, 1h)", *d)
	}
	return &v, nil
}

var knownMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace}
