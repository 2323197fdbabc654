// Package inbound compiles the inbound (authorization) policy of every
// workload port from the model's policy.skein.io objects (Server,
// AuthorizationPolicy, MeshTLSAuthentication, NetworkAuthentication), the
// HTTPRoutes/GRPCRoutes whose parent is a Server, and the default-policy
// annotations, and serves it to proxies as a stream per port (the
// WatchInbound gRPC API). Like internal/controller/policy for routes, it
// names the object and field of every problem and keeps an invalid
// object's last good version in force. It does not decide requests:
// (*authz.Inbound).Decide does, in the proxy and in `skein authz explain`.
package inbound

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	skeinv1 "github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/controller/policy"
	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/routes"
)

// Config is what the compiler needs besides the model.
type Config struct {
	// DefaultPolicy applies to ports no Server selects when neither the
	// instance nor its namespace is annotated; all-unauthenticated when
	// empty.
	DefaultPolicy authz.DefaultPolicy
	// ClusterNetworks are the cluster-* default policies' networks.
	ClusterNetworks []netip.Prefix
}

// DefaultClusterNetworks are the RFC 1918 ranges and 100.64.0.0/10 (CGNAT,
// which some clusters use for pods): the -cluster-networks default.
var DefaultClusterNetworks = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("100.64.0.0/10"),
}

// Compiler turns inbound inputs into compiled policies, remembering the
// last good version of every object. One goroutine calls Update; the
// Compiled values are immutable and safe to share.
type Compiler struct {
	cfg Config
	log *slog.Logger

	lastServers  map[string]*policyv1.Server // by "ns/name"
	lastMeshTLS  map[string]*authz.MeshTLS
	lastNetworks map[string][]authz.Network
	lastPolicies map[string]*compiledPolicy
	lastRoutes   map[string]*compiledRoute // by "Kind ns/name"
	shadow       *shadowLog
}

// NewCompiler returns a Compiler with no history. A nil log means
// slog.Default().
func NewCompiler(cfg Config, log *slog.Logger) *Compiler {
	if cfg.DefaultPolicy == "" {
		cfg.DefaultPolicy = authz.AllUnauthenticated
	}
	if cfg.ClusterNetworks == nil {
		cfg.ClusterNetworks = DefaultClusterNetworks
	}
	if log == nil {
		log = slog.Default()
	}
	return &Compiler{
		cfg: cfg, log: log,
		lastServers: map[string]*policyv1.Server{}, lastMeshTLS: map[string]*authz.MeshTLS{},
		lastNetworks: map[string][]authz.Network{}, lastPolicies: map[string]*compiledPolicy{},
		lastRoutes: map[string]*compiledRoute{}, shadow: &shadowLog{log: log, seen: map[string]bool{}},
	}
}

// compiledPolicy is a valid AuthorizationPolicy.
type compiledPolicy struct {
	namespace string
	target    policyv1.LocalRef
	authz     authz.Authorization
}

// compiledRoute is a valid route whose parent is a Server.
type compiledRoute struct {
	namespace string
	name      string // "ns/name"
	kind      string
	created   time.Time
	servers   []string // Server names (same namespace)
	matches   []routes.Match
}

// Compiled is the outcome of one Update.
type Compiled struct {
	Version uint64
	// Errors lists every invalid object, in a stable order.
	Errors []*policy.Error
	// Inputs are what was compiled (for `skein authz simulate`, which
	// compiles them again with proposed objects merged in).
	Inputs model.InboundInputs

	cfg         Config
	trustDomain string
	instances   map[instanceKey]*model.Instance
	namespaces  map[string]model.Namespace
	servers     map[string][]*policyv1.Server // by namespace, oldest first
	selectors   map[*policyv1.Server]labels.Selector
	// policies and routes by namespace (routes in precedence order).
	policies map[string][]*compiledPolicy
	routes   map[string][]*compiledRoute
	shadow   *shadowLog

	mu      sync.Mutex
	inbound map[portKey]*authz.Inbound
}

type instanceKey struct{ namespace, name string }

type portKey struct {
	instanceKey
	port uint16
}

// Update compiles in.
func (c *Compiler) Update(in model.InboundInputs) *Compiled {
	out := &Compiled{
		Version: in.Version, Inputs: in, cfg: c.cfg, trustDomain: in.TrustDomain, shadow: c.shadow,
		instances:  map[instanceKey]*model.Instance{},
		namespaces: map[string]model.Namespace{},
		servers:    map[string][]*policyv1.Server{},
		selectors:  map[*policyv1.Server]labels.Selector{},
		policies:   map[string][]*compiledPolicy{},
		routes:     map[string][]*compiledRoute{},
		inbound:    map[portKey]*authz.Inbound{},
	}
	for i := range in.Instances {
		inst := &in.Instances[i]
		out.instances[instanceKey{inst.Namespace, inst.Name}] = inst
	}
	for _, ns := range in.Namespaces {
		out.namespaces[ns.Name] = ns
		if v, ok := ns.Annotations[policyv1.DefaultPolicyAnnotation]; ok {
			if err := policyv1.ValidateDefaultPolicy("metadata.annotations["+policyv1.DefaultPolicyAnnotation+"]", v); err != nil {
				out.Errors = append(out.Errors, objectError("Namespace", "", ns.Name, err)...)
			}
		}
	}
	for _, inst := range in.Instances {
		if v := inst.DefaultInboundPolicy; v != "" {
			if err := policyv1.ValidateDefaultPolicy("metadata.annotations["+policyv1.DefaultPolicyAnnotation+"]", v); err != nil {
				out.Errors = append(out.Errors, objectError("Pod", inst.Namespace, inst.Name, err)...)
			}
		}
	}
	c.meshTLS(in, out)
	c.networks(in, out)
	c.authorizationPolicies(in, out)
	c.servers(in, out)
	c.routes(in, out)
	slices.SortStableFunc(out.Errors, func(a, b *policy.Error) int {
		return cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}

// objectError turns a Validate error (joined *skeinv1.FieldError) into
// policy.Errors naming the object.
func objectError(kind, namespace, name string, err error) []*policy.Error {
	var out []*policy.Error
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		pe := &policy.Error{Kind: kind, Namespace: namespace, Name: name, Problem: e.Error()}
		var fe *skeinv1.FieldError
		if errors.As(e, &fe) {
			pe.Field, pe.Problem = fe.Field, fe.Problem
		}
		out = append(out, pe)
	}
	return out
}

func fail(kind, namespace, name, field, format string, args ...any) *policy.Error {
	return &policy.Error{Kind: kind, Namespace: namespace, Name: name, Field: field, Problem: fmt.Sprintf(format, args...)}
}

// keepLast records a good value or, after errors, falls back to the last
// good one; ids not seen this round are forgotten.
func keepLast[T any](last map[string]T, seen map[string]bool, id string, value T, bad bool) (T, bool) {
	seen[id] = true
	if bad {
		v, ok := last[id]
		return v, ok
	}
	last[id] = value
	return value, true
}

func forget[T any](last map[string]T, seen map[string]bool) {
	for id := range last {
		if !seen[id] {
			delete(last, id)
		}
	}
}

func (c *Compiler) meshTLS(in model.InboundInputs, out *Compiled) {
	seen := map[string]bool{}
	for _, m := range in.MeshTLSAuthentications {
		var compiled *authz.MeshTLS
		var errs []*policy.Error
		if err := m.Validate(); err != nil {
			errs = objectError(policyv1.MeshTLSAuthenticationKind, m.Namespace, m.Name, err)
		} else {
			compiled = &authz.MeshTLS{Identities: slices.Clone(m.Spec.Identities)}
			for _, r := range m.Spec.IdentityRefs {
				ns := cmp.Or(r.Namespace, m.Namespace)
				if r.Kind == "Namespace" {
					compiled.Prefixes = append(compiled.Prefixes, namespacePrefix(in.TrustDomain, r.Name))
				} else {
					compiled.Identities = append(compiled.Identities, model.Identity(in.TrustDomain, ns, r.Name))
				}
			}
		}
		out.Errors = append(out.Errors, errs...)
		keepLast(c.lastMeshTLS, seen, m.Namespace+"/"+m.Name, compiled, len(errs) > 0)
	}
	forget(c.lastMeshTLS, seen)
}

func namespacePrefix(trustDomain, namespace string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/"
}

func (c *Compiler) networks(in model.InboundInputs, out *Compiled) {
	seen := map[string]bool{}
	for _, n := range in.NetworkAuthentications {
		var compiled []authz.Network
		var errs []*policy.Error
		if err := n.Validate(); err != nil {
			errs = objectError(policyv1.NetworkAuthenticationKind, n.Namespace, n.Name, err)
		} else {
			for _, nw := range n.Spec.Networks {
				p, _ := policyv1.ParseCIDR(nw.Cidr) // Validate parsed it
				network := authz.Network{Prefix: p}
				for _, e := range nw.Except {
					ex, _ := policyv1.ParseCIDR(e)
					network.Except = append(network.Except, ex)
				}
				compiled = append(compiled, network)
			}
		}
		out.Errors = append(out.Errors, errs...)
		keepLast(c.lastNetworks, seen, n.Namespace+"/"+n.Name, compiled, len(errs) > 0)
	}
	forget(c.lastNetworks, seen)
}

func (c *Compiler) authorizationPolicies(in model.InboundInputs, out *Compiled) {
	seen := map[string]bool{}
	for _, p := range in.AuthorizationPolicies {
		id := p.Namespace + "/" + p.Name
		compiled, errs := c.authorizationPolicy(in.TrustDomain, p)
		out.Errors = append(out.Errors, errs...)
		if cp, ok := keepLast(c.lastPolicies, seen, id, compiled, len(errs) > 0); ok {
			out.policies[cp.namespace] = append(out.policies[cp.namespace], cp)
		}
	}
	forget(c.lastPolicies, seen)
}

// authorizationPolicy compiles one policy against the authentications in
// force (their last good versions included).
func (c *Compiler) authorizationPolicy(trustDomain string, p *policyv1.AuthorizationPolicy) (*compiledPolicy, []*policy.Error) {
	kind := policyv1.AuthorizationPolicyKind
	if err := p.Validate(); err != nil {
		return nil, objectError(kind, p.Namespace, p.Name, err)
	}
	cp := &compiledPolicy{namespace: p.Namespace, target: p.Spec.TargetRef, authz: authz.Authorization{Name: p.Namespace + "/" + p.Name}}
	var errs []*policy.Error
	meshTLSRefs, networkRefs := 0, 0
	for i, r := range p.Spec.RequiredAuthenticationRefs {
		field := fmt.Sprintf("spec.requiredAuthenticationRefs[%d]", i)
		ns := cmp.Or(r.Namespace, p.Namespace)
		switch r.Kind {
		case policyv1.MeshTLSAuthenticationKind:
			meshTLSRefs++
			m := c.lastMeshTLS[ns+"/"+r.Name]
			if m == nil {
				errs = append(errs, fail(kind, p.Namespace, p.Name, field, "MeshTLSAuthentication %s/%s not found (or never valid)", ns, r.Name))
				continue
			}
			cp.authz.MeshTLS = joinMeshTLS(cp.authz.MeshTLS, m)
		case policyv1.NetworkAuthenticationKind:
			networkRefs++
			n, ok := c.lastNetworks[ns+"/"+r.Name]
			if !ok {
				errs = append(errs, fail(kind, p.Namespace, p.Name, field, "NetworkAuthentication %s/%s not found (or never valid)", ns, r.Name))
				continue
			}
			cp.authz.Networks = append(cp.authz.Networks, n...)
		case "ServiceAccount":
			cp.authz.MeshTLS = joinMeshTLS(cp.authz.MeshTLS, &authz.MeshTLS{Identities: []string{model.Identity(trustDomain, ns, r.Name)}})
		}
	}
	// All required authentications must match: two identity lists (or two
	// network lists) would need an intersection nobody means; Linkerd
	// refuses them too.
	if meshTLSRefs > 1 {
		errs = append(errs, fail(kind, p.Namespace, p.Name, "spec.requiredAuthenticationRefs", "names %d MeshTLSAuthentications: at most one (list every identity in it)", meshTLSRefs))
	}
	if networkRefs > 1 {
		errs = append(errs, fail(kind, p.Namespace, p.Name, "spec.requiredAuthenticationRefs", "names %d NetworkAuthentications: at most one (list every network in it)", networkRefs))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return cp, nil
}

// joinMeshTLS adds b's identities to a (ServiceAccount refs beside a
// MeshTLSAuthentication widen its list, as Linkerd's do).
func joinMeshTLS(a, b *authz.MeshTLS) *authz.MeshTLS {
	if a == nil {
		return &authz.MeshTLS{Identities: slices.Clone(b.Identities), Prefixes: slices.Clone(b.Prefixes)}
	}
	a.Identities = append(a.Identities, b.Identities...)
	a.Prefixes = append(a.Prefixes, b.Prefixes...)
	return a
}

func (c *Compiler) servers(in model.InboundInputs, out *Compiled) {
	seen := map[string]bool{}
	byNS := map[string][]*model.Instance{}
	for key, inst := range out.instances {
		byNS[key.namespace] = append(byNS[key.namespace], inst)
	}
	for _, s := range in.Servers {
		id := s.Namespace + "/" + s.Name
		errs := validateServer(s, byNS[s.Namespace])
		out.Errors = append(out.Errors, errs...)
		if srv, ok := keepLast(c.lastServers, seen, id, s, len(errs) > 0); ok {
			selector, err := metav1.LabelSelectorAsSelector(&srv.Spec.PodSelector)
			if err != nil {
				continue // Validate refused it: a last good Server has none
			}
			out.servers[srv.Namespace] = append(out.servers[srv.Namespace], srv)
			out.selectors[srv] = selector
		}
	}
	forget(c.lastServers, seen)
	for _, list := range out.servers {
		slices.SortStableFunc(list, func(a, b *policyv1.Server) int {
			return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), strings.Compare(a.Name, b.Name))
		})
	}
}

// validateServer checks a Server on its own and, for a port given by name,
// that the pods it selects (of instances, its namespace's) have that port.
func validateServer(s *policyv1.Server, instances []*model.Instance) []*policy.Error {
	if err := s.Validate(); err != nil {
		return objectError(policyv1.ServerKind, s.Namespace, s.Name, err)
	}
	if s.Spec.Port.Type != intstr.String {
		return nil
	}
	selector, _ := metav1.LabelSelectorAsSelector(&s.Spec.PodSelector)
	selected, named := 0, 0
	for _, inst := range instances {
		if !selector.Matches(labels.Set(inst.Labels)) {
			continue
		}
		selected++
		if _, ok := inst.Ports[s.Spec.Port.StrVal]; ok {
			named++
		}
	}
	if selected > 0 && named == 0 {
		return []*policy.Error{fail(policyv1.ServerKind, s.Namespace, s.Name, "spec.port",
			"none of the %d pods spec.podSelector selects has a port named %q", selected, s.Spec.Port.StrVal)}
	}
	return nil
}

func (c *Compiler) routes(in model.InboundInputs, out *Compiled) {
	seen := map[string]bool{}
	add := func(kind, namespace, name string, created time.Time, parents []string, compile func() ([]routes.Match, []*policy.Error)) {
		if len(parents) == 0 {
			return // not an inbound route
		}
		id := kind + " " + namespace + "/" + name
		matches, errs := compile()
		out.Errors = append(out.Errors, errs...)
		r := &compiledRoute{namespace: namespace, name: namespace + "/" + name, kind: kind, created: created, servers: parents, matches: matches}
		if cr, ok := keepLast(c.lastRoutes, seen, id, r, len(errs) > 0); ok {
			out.routes[cr.namespace] = append(out.routes[cr.namespace], cr)
		}
	}
	for _, r := range in.GRPCRoutes {
		add("GRPCRoute", r.Namespace, r.Name, r.CreationTimestamp.Time, serverParents(r.Namespace, r.Spec.ParentRefs),
			func() ([]routes.Match, []*policy.Error) { return policy.GRPCRouteMatches(r) })
	}
	for _, r := range in.HTTPRoutes {
		add("HTTPRoute", r.Namespace, r.Name, r.CreationTimestamp.Time, serverParents(r.Namespace, r.Spec.ParentRefs),
			func() ([]routes.Match, []*policy.Error) { return policy.HTTPRouteMatches(r) })
	}
	forget(c.lastRoutes, seen)
	// GRPCRoutes first (they match gRPC requests only), then the oldest.
	for _, list := range out.routes {
		slices.SortStableFunc(list, func(a, b *compiledRoute) int {
			if a.kind != b.kind {
				return strings.Compare(a.kind, b.kind) // "GRPCRoute" < "HTTPRoute"
			}
			return cmp.Or(a.created.Compare(b.created), strings.Compare(a.name, b.name))
		})
	}
}

// shadowLog logs each set of Servers that select the same port once.
type shadowLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	seen map[string]bool
}

func (s *shadowLog) report(inst *model.Instance, port uint16, names []string) {
	key := inst.Namespace + "/" + strings.Join(names, ",")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[key] {
		return
	}
	s.seen[key] = true
	s.log.Warn("several Servers select one port: the oldest wins", "namespace", inst.Namespace,
		"pod", inst.Name, "port", port, "winner", names[0], "ignored", names[1:])
}
