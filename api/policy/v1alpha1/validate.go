package v1alpha1

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	skeinv1 "github.com/skeinmesh/skein/api/v1alpha1"
)

// Default inbound policies, the values of accessPolicy and of the
// skein.io/default-inbound-policy annotation.
var DefaultPolicies = []string{"all-unauthenticated", "all-authenticated", "cluster-authenticated", "cluster-unauthenticated", "deny", "audit"}

// Route kinds an AuthorizationPolicy may target, in gatewayGroup.
const gatewayGroup = "gateway.networking.k8s.io"

func fail(field, format string, args ...any) error {
	return &skeinv1.FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

func validateName(name string) error {
	if name == "" {
		return fail("metadata.name", "is required")
	}
	return nil
}

// Validate checks a Server on its own. Errors are *skeinv1.FieldError,
// joined.
func (s *Server) Validate() error {
	errs := []error{validateName(s.Name)}
	if _, err := metav1.LabelSelectorAsSelector(&s.Spec.PodSelector); err != nil {
		errs = append(errs, fail("spec.podSelector", "%v", err))
	}
	switch p := s.Spec.Port; {
	case p.Type == intstr.String:
		if p.StrVal == "" {
			errs = append(errs, fail("spec.port", "is empty: want a number or a port name"))
		}
	case p.IntVal < 1 || p.IntVal > 65535:
		errs = append(errs, fail("spec.port", "%d is not a port number (1-65535)", p.IntVal))
	}
	switch s.Spec.ProxyProtocol {
	case "", "unknown", "HTTP/1", "HTTP/2", "gRPC", "opaque", "TLS":
	default:
		errs = append(errs, fail("spec.proxyProtocol", "%q is not one of unknown, HTTP/1, HTTP/2, gRPC, opaque, TLS", s.Spec.ProxyProtocol))
	}
	if a := s.Spec.AccessPolicy; a != "" {
		errs = append(errs, ValidateDefaultPolicy("spec.accessPolicy", a))
	}
	if rl := s.Spec.RateLimit; rl != nil {
		errs = append(errs, validateLimit("spec.rateLimit.total", rl.Total), validateLimit("spec.rateLimit.identity", rl.Identity))
		for i, o := range rl.Overrides {
			field := fmt.Sprintf("spec.rateLimit.overrides[%d]", i)
			if o.RequestsPerSecond < 1 {
				errs = append(errs, fail(field+".requestsPerSecond", "%d: must be at least 1", o.RequestsPerSecond))
			}
			if len(o.ClientRefs) == 0 {
				errs = append(errs, fail(field+".clientRefs", "is empty: name at least one ServiceAccount"))
			}
			for j, r := range o.ClientRefs {
				errs = append(errs, validateRef(fmt.Sprintf("%s.clientRefs[%d]", field, j), r.Group, r.Kind, r.Name, "ServiceAccount"))
			}
		}
	}
	return errors.Join(errs...)
}

func validateLimit(field string, l *Limit) error {
	if l != nil && l.RequestsPerSecond < 1 {
		return fail(field+".requestsPerSecond", "%d: must be at least 1", l.RequestsPerSecond)
	}
	return nil
}

// ValidateDefaultPolicy checks a default inbound policy's name.
func ValidateDefaultPolicy(field, value string) error {
	for _, p := range DefaultPolicies {
		if value == p {
			return nil
		}
	}
	return fail(field, "%q is not a default policy (%s)", value, strings.Join(DefaultPolicies, ", "))
}

// validateRef checks that a ref's group and kind are one of kinds
// ("Kind" for a core kind, "group/Kind" otherwise).
func validateRef(field, group, kind, name string, kinds ...string) error {
	if name == "" {
		return fail(field+".name", "is required")
	}
	want := kind
	if group != "" {
		want = group + "/" + kind
	}
	for _, k := range kinds {
		if want == k {
			return nil
		}
	}
	return fail(field+".kind", "%q is not a kind this ref may name (%s)", want, strings.Join(kinds, ", "))
}

// Validate checks an AuthorizationPolicy on its own.
func (a *AuthorizationPolicy) Validate() error {
	errs := []error{validateName(a.Name)}
	t := a.Spec.TargetRef
	errs = append(errs, validateRef("spec.targetRef", t.Group, t.Kind, t.Name,
		Group+"/"+ServerKind, gatewayGroup+"/HTTPRoute", gatewayGroup+"/GRPCRoute", "Namespace"))
	if t.Kind == "Namespace" && t.Group == "" && t.Name != a.Namespace {
		errs = append(errs, fail("spec.targetRef.name", "Namespace %q is not the policy's own namespace %q", t.Name, a.Namespace))
	}
	if len(a.Spec.RequiredAuthenticationRefs) == 0 {
		errs = append(errs, fail("spec.requiredAuthenticationRefs", "is empty: name at least one authentication"))
	}
	for i, r := range a.Spec.RequiredAuthenticationRefs {
		errs = append(errs, validateRef(fmt.Sprintf("spec.requiredAuthenticationRefs[%d]", i), r.Group, r.Kind, r.Name,
			Group+"/"+MeshTLSAuthenticationKind, Group+"/"+NetworkAuthenticationKind, "ServiceAccount"))
	}
	return errors.Join(errs...)
}

// Validate checks a MeshTLSAuthentication on its own.
func (m *MeshTLSAuthentication) Validate() error {
	errs := []error{validateName(m.Name)}
	s := &m.Spec
	if len(s.Identities) == 0 && len(s.IdentityRefs) == 0 {
		errs = append(errs, fail("spec.identities", "is empty, and so is spec.identityRefs: name at least one identity"))
	}
	if len(s.Identities) > 0 && len(s.IdentityRefs) > 0 {
		errs = append(errs, fail("spec.identityRefs", "cannot be set together with spec.identities"))
	}
	for i, id := range s.Identities {
		errs = append(errs, ValidateIdentity(fmt.Sprintf("spec.identities[%d]", i), id))
	}
	for i, r := range s.IdentityRefs {
		errs = append(errs, validateRef(fmt.Sprintf("spec.identityRefs[%d]", i), r.Group, r.Kind, r.Name, "ServiceAccount", "Namespace"))
	}
	return errors.Join(errs...)
}

// ValidateIdentity checks an identity pattern: a SPIFFE ID, "*" or
// "*.suffix".
func ValidateIdentity(field, id string) error {
	switch {
	case id == "*":
		return nil
	case strings.HasPrefix(id, "*."):
		if len(id) == 2 || strings.Contains(id[2:], "*") {
			return fail(field, "%q: a wildcard is \"*\" or \"*.suffix\"", id)
		}
		return nil
	case strings.Contains(id, "*"):
		return fail(field, "%q: a wildcard is \"*\" or \"*.suffix\"", id)
	case !strings.HasPrefix(id, "spiffe://") || len(id) == len("spiffe://"):
		return fail(field, "%q is not a SPIFFE ID (spiffe://trust-domain/ns/NS/sa/SA), \"*\" or \"*.suffix\"", id)
	}
	return nil
}

// Validate checks a NetworkAuthentication on its own: every CIDR parses and
// every exception lies inside its network.
func (n *NetworkAuthentication) Validate() error {
	errs := []error{validateName(n.Name)}
	if len(n.Spec.Networks) == 0 {
		errs = append(errs, fail("spec.networks", "is empty: name at least one network"))
	}
	for i, nw := range n.Spec.Networks {
		field := fmt.Sprintf("spec.networks[%d]", i)
		prefix, err := ParseCIDR(nw.Cidr)
		if err != nil {
			errs = append(errs, fail(field+".cidr", "%v", err))
		}
		for j, e := range nw.Except {
			ex, err := ParseCIDR(e)
			switch {
			case err != nil:
				errs = append(errs, fail(fmt.Sprintf("%s.except[%d]", field, j), "%v", err))
			case prefix.IsValid() && !(prefix.Bits() <= ex.Bits() && prefix.Contains(ex.Addr())):
				errs = append(errs, fail(fmt.Sprintf("%s.except[%d]", field, j), "%s is not inside %s", ex, prefix))
			}
		}
	}
	return errors.Join(errs...)
}

// ParseCIDR parses a CIDR ("10.0.0.0/8") or a single address (a /32 or
// /128), masked.
func ParseCIDR(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (10.0.0.0/8) or an IP address", s)
}
