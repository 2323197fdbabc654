package inbound

import (
	"slices"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/model"
)

// serverParents are the names of the Servers (group policy.skein.io) in
// parentRefs; parents in another namespace are not the route's to claim.
func serverParents(namespace string, refs []gatewayv1.ParentReference) []string {
	var out []string
	for _, p := range refs {
		if p.Kind == nil || string(*p.Kind) != policyv1.ServerKind || p.Group == nil || string(*p.Group) != policyv1.Group {
			continue
		}
		if p.Namespace != nil && string(*p.Namespace) != namespace {
			continue
		}
		out = append(out, string(p.Name))
	}
	return out
}

// Instance returns a copy of the instance the model knows by namespace and
// name.
func (c *Compiled) Instance(namespace, name string) (model.Instance, bool) {
	inst := c.instances[instanceKey{namespace, name}]
	if inst == nil {
		return model.Instance{}, false
	}
	return *inst, true
}

// Inbound returns the policy of port of the named instance; false when the
// model knows no such instance. The result is shared: do not modify it.
func (c *Compiled) Inbound(namespace, name string, port uint16) (*authz.Inbound, bool) {
	inst := c.instances[instanceKey{namespace, name}]
	if inst == nil {
		return nil, false
	}
	key := portKey{instanceKey{namespace, name}, port}
	c.mu.Lock()
	defer c.mu.Unlock()
	if in, ok := c.inbound[key]; ok {
		return in, true
	}
	in := c.build(inst, port)
	c.inbound[key] = in
	return in, true
}

// build compiles the policy of one instance port.
func (c *Compiled) build(inst *model.Instance, port uint16) *authz.Inbound {
	in := &authz.Inbound{Port: port, ClusterNetworks: c.cfg.ClusterNetworks}
	for _, p := range inst.ProbePaths {
		if p.Port == port && !slices.Contains(in.ProbePaths, p.Path) {
			in.ProbePaths = append(in.ProbePaths, p.Path)
		}
	}
	servers := c.serversOf(inst, port)
	if len(servers) == 0 {
		in.Default = c.defaultPolicy(inst)
		return in
	}
	srv := servers[0] // the oldest
	if len(servers) > 1 {
		c.shadowed(inst, port, servers)
	}
	in.Server = srv.Namespace + "/" + srv.Name
	in.Protocol = srv.Spec.ProxyProtocol
	if in.Protocol == "unknown" {
		in.Protocol = ""
	}
	in.Default = authz.DefaultPolicy(srv.Spec.AccessPolicy)
	if in.Default == "" {
		in.Default = authz.Deny
	}
	in.RateLimit = c.rateLimit(srv)
	for _, p := range c.policies[srv.Namespace] {
		t := p.target
		if (t.Group == policyv1.Group && t.Kind == policyv1.ServerKind && t.Name == srv.Name) || (t.Group == "" && t.Kind == "Namespace") {
			in.Authorizations = append(in.Authorizations, p.authz)
		}
	}
	for _, r := range c.routes[srv.Namespace] {
		if !slices.Contains(r.servers, srv.Name) {
			continue
		}
		route := authz.Route{Name: r.name, Matches: r.matches}
		for _, p := range c.policies[r.namespace] {
			if p.target.Group == "gateway.networking.k8s.io" && p.target.Kind == r.kind && r.namespace+"/"+p.target.Name == r.name {
				route.Authorizations = append(route.Authorizations, p.authz)
			}
		}
		in.Routes = append(in.Routes, route)
	}
	return in
}

// serversOf lists the Servers that select inst's port, oldest first.
func (c *Compiled) serversOf(inst *model.Instance, port uint16) []*policyv1.Server {
	var out []*policyv1.Server
	for _, s := range c.servers[inst.Namespace] {
		if !serverPort(s, inst, port) {
			continue
		}
		if c.selectors[s].Matches(labels.Set(inst.Labels)) {
			out = append(out, s)
		}
	}
	return out
}

func serverPort(s *policyv1.Server, inst *model.Instance, port uint16) bool {
	if s.Spec.Port.Type == intstr.String {
		n, ok := inst.Ports[s.Spec.Port.StrVal]
		return ok && n == port
	}
	return s.Spec.Port.IntVal == int32(port)
}

// defaultPolicy is the policy of a port no Server selects: the instance's
// annotation, else its namespace's, else the controller's flag. A value
// that is not a policy was reported by Update and is skipped.
func (c *Compiled) defaultPolicy(inst *model.Instance) authz.DefaultPolicy {
	if valid(inst.DefaultInboundPolicy) {
		return authz.DefaultPolicy(inst.DefaultInboundPolicy)
	}
	if v := c.namespaces[inst.Namespace].Annotations[policyv1.DefaultPolicyAnnotation]; valid(v) {
		return authz.DefaultPolicy(v)
	}
	return c.cfg.DefaultPolicy
}

func valid(policy string) bool {
	return policy != "" && slices.Contains(policyv1.DefaultPolicies, policy)
}

func (c *Compiled) rateLimit(srv *policyv1.Server) *authz.RateLimit {
	rl := srv.Spec.RateLimit
	if rl == nil {
		return nil
	}
	out := &authz.RateLimit{}
	if rl.Total != nil {
		out.Total = float64(rl.Total.RequestsPerSecond)
	}
	if rl.Identity != nil {
		out.PerIdentity = float64(rl.Identity.RequestsPerSecond)
	}
	for _, o := range rl.Overrides {
		ov := authz.RateLimitOverride{RequestsPerSecond: float64(o.RequestsPerSecond)}
		for _, r := range o.ClientRefs {
			ns := r.Namespace
			if ns == "" {
				ns = srv.Namespace
			}
			ov.Identities = append(ov.Identities, model.Identity(c.trustDomain, ns, r.Name))
		}
		out.Overrides = append(out.Overrides, ov)
	}
	return out
}

// shadowed logs, once per set, that several Servers select one port and
// the oldest wins.
func (c *Compiled) shadowed(inst *model.Instance, port uint16, servers []*policyv1.Server) {
	names := make([]string, len(servers))
	for i, s := range servers {
		names[i] = s.Name
	}
	c.shadow.report(inst, port, names)
}
