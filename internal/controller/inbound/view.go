package inbound

import (
	"cmp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/model"
)

// The views below are what `skein authz` shows: each Server with the
// workloads it selects, the policies that apply to it and who they let in,
// and the default policy of every workload. Their JSON field names are
// documented in docs/cli.md and kept stable.

// ServerView is one Server as `skein authz` lists it.
type ServerView struct {
	Namespace    string   `json:"namespace"`
	Name         string   `json:"name"`
	Port         string   `json:"port"`
	Protocol     string   `json:"protocol,omitempty"`
	AccessPolicy string   `json:"access_policy"`
	Workloads    []string `json:"workloads"`
	// Authorizations apply to every request to the Server; Routes carry
	// their own.
	Authorizations []AuthorizationView `json:"authorizations"`
	Routes         []RouteView         `json:"routes,omitempty"`
	RateLimit      *RateLimitView      `json:"rate_limit,omitempty"`
}

// RateLimitView is a Server's rate limit in requests per second (0: none).
type RateLimitView struct {
	Total       float64                 `json:"total"`
	PerIdentity float64                 `json:"per_identity"`
	Overrides   []RateLimitOverrideView `json:"overrides,omitempty"`
}

// RateLimitOverrideView is a limit of its own for the identities listed.
type RateLimitOverrideView struct {
	RequestsPerSecond float64  `json:"requests_per_second"`
	Identities        []string `json:"identities"`
}

func rateLimitView(rl *authz.RateLimit) *RateLimitView {
	if rl == nil {
		return nil
	}
	v := &RateLimitView{Total: rl.Total, PerIdentity: rl.PerIdentity}
	for _, o := range rl.Overrides {
		v.Overrides = append(v.Overrides, RateLimitOverrideView{RequestsPerSecond: o.RequestsPerSecond, Identities: o.Identities})
	}
	return v
}

// AuthorizationView is one AuthorizationPolicy and who it lets in.
type AuthorizationView struct {
	Name string `json:"name"`
	// Identities and IdentityPrefixes are the mesh-TLS clients it allows
	// (empty: no mesh-TLS requirement); Networks the client networks
	// (empty: any address).
	Identities       []string `json:"identities,omitempty"`
	IdentityPrefixes []string `json:"identity_prefixes,omitempty"`
	Networks         []string `json:"networks,omitempty"`
}

// RouteView is a route whose parent is the Server.
type RouteView struct {
	Name           string              `json:"name"`
	Authorizations []AuthorizationView `json:"authorizations"`
}

// WorkloadDefault is the default policy of a workload's ports no Server
// selects, and where it comes from.
type WorkloadDefault struct {
	Namespace     string `json:"namespace"`
	Workload      string `json:"workload"`
	DefaultPolicy string `json:"default_policy"`
	// From is "pod annotation", "namespace annotation" or "controller".
	From string `json:"from"`
}

func authorizationView(a authz.Authorization) AuthorizationView {
	v := AuthorizationView{Name: a.Name}
	if a.MeshTLS != nil {
		v.Identities, v.IdentityPrefixes = a.MeshTLS.Identities, a.MeshTLS.Prefixes
	}
	for _, n := range a.Networks {
		text := n.Prefix.String()
		for _, e := range n.Except {
			text += " except " + e.String()
		}
		v.Networks = append(v.Networks, text)
	}
	return v
}

// Servers lists the Servers of namespace ("" for all) that select an
// instance of workload ("" for any), sorted by namespace and name.
func (c *Compiled) Servers(namespace, workload string) []ServerView {
	var out []ServerView
	for ns, servers := range c.servers {
		if namespace != "" && ns != namespace {
			continue
		}
		for _, s := range servers {
			v, inst := c.serverView(s)
			if workload != "" && !slices.Contains(v.Workloads, workload) {
				continue
			}
			if inst != nil {
				// The Server's policies, as compiled for one instance it
				// selects (they are the same for all).
				if port := c.portOf(s, inst); port != 0 {
					in, _ := c.Inbound(inst.Namespace, inst.Name, port)
					for _, a := range in.Authorizations {
						v.Authorizations = append(v.Authorizations, authorizationView(a))
					}
					for _, r := range in.Routes {
						rv := RouteView{Name: r.Name, Authorizations: []AuthorizationView{}}
						for _, a := range r.Authorizations {
							rv.Authorizations = append(rv.Authorizations, authorizationView(a))
						}
						v.Routes = append(v.Routes, rv)
					}
				}
			}
			if v.Authorizations == nil {
				v.Authorizations = []AuthorizationView{}
			}
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b ServerView) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}

// serverView is a Server's own fields and the workloads it selects, with
// one instance it selects (nil for none).
func (c *Compiled) serverView(s *policyv1.Server) (ServerView, *model.Instance) {
	v := ServerView{Namespace: s.Namespace, Name: s.Name, Port: s.Spec.Port.String(), Protocol: s.Spec.ProxyProtocol,
		AccessPolicy: cmp.Or(s.Spec.AccessPolicy, string(authz.Deny)), Workloads: []string{}, RateLimit: rateLimitView(c.rateLimit(s))}
	selector := c.selectors[s]
	var first *model.Instance
	for _, inst := range c.sortedInstances(s.Namespace) {
		if !selector.Matches(labels.Set(inst.Labels)) {
			continue
		}
		if first == nil && c.portOf(s, inst) != 0 {
			first = inst
		}
		if !slices.Contains(v.Workloads, inst.Workload) {
			v.Workloads = append(v.Workloads, inst.Workload)
		}
	}
	slices.Sort(v.Workloads)
	return v, first
}

// portOf is the port number s selects on inst; 0 when inst lacks it.
func (c *Compiled) portOf(s *policyv1.Server, inst *model.Instance) uint16 {
	if s.Spec.Port.StrVal != "" {
		return inst.Ports[s.Spec.Port.StrVal]
	}
	return uint16(s.Spec.Port.IntVal)
}

func (c *Compiled) sortedInstances(namespace string) []*model.Instance {
	var out []*model.Instance
	for key, inst := range c.instances {
		if namespace == "" || key.namespace == namespace {
			out = append(out, inst)
		}
	}
	slices.SortFunc(out, func(a, b *model.Instance) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}

// Defaults lists the default policy of each workload of namespace (""
// for all) whose name is workload ("" for any): what its ports no Server
// selects get.
func (c *Compiled) Defaults(namespace, workload string) []WorkloadDefault {
	var out []WorkloadDefault
	seen := map[[2]string]bool{}
	for _, inst := range c.sortedInstances(namespace) {
		key := [2]string{inst.Namespace, inst.Workload}
		if seen[key] || (workload != "" && inst.Workload != workload) {
			continue
		}
		seen[key] = true
		d := WorkloadDefault{Namespace: inst.Namespace, Workload: inst.Workload, DefaultPolicy: string(c.defaultPolicy(inst)), From: "controller"}
		switch {
		case valid(inst.DefaultInboundPolicy):
			d.From = "pod annotation"
		case valid(c.namespaces[inst.Namespace].Annotations[policyv1.DefaultPolicyAnnotation]):
			d.From = "namespace annotation"
		}
		out = append(out, d)
	}
	return out
}

// InstanceOf returns an instance of workload in namespace (the first by
// name), for questions about the workload as a whole.
func (c *Compiled) InstanceOf(namespace, workload string) (model.Instance, bool) {
	for _, inst := range c.sortedInstances(namespace) {
		if inst.Workload == workload {
			return *inst, true
		}
	}
	return model.Instance{}, false
}

// ExternalInstanceOf returns an instance of the Workload (an external
// workload, not pods) named workload in namespace; its instances share one
// policy.
func (c *Compiled) ExternalInstanceOf(namespace, workload string) (model.Instance, bool) {
	for _, inst := range c.sortedInstances(namespace) {
		if inst.Workload == workload && inst.External {
			return *inst, true
		}
	}
	return model.Instance{}, false
}

// Recompile compiles the inputs of c again, with extra objects merged in
// (an object of the same kind, namespace and name replaces the live one),
// as `skein authz simulate` proposes them. It does not touch the live
// compiler: the last-good history is not consulted, so a proposed object
// with errors is reported, not replaced.
func (c *Compiled) Recompile(extra model.InboundInputs) *Compiled {
	in := c.Inputs
	in.Servers = mergeObjects(in.Servers, extra.Servers, func(o *policyv1.Server) string { return o.Namespace + "/" + o.Name })
	in.AuthorizationPolicies = mergeObjects(in.AuthorizationPolicies, extra.AuthorizationPolicies, func(o *policyv1.AuthorizationPolicy) string { return o.Namespace + "/" + o.Name })
	in.MeshTLSAuthentications = mergeObjects(in.MeshTLSAuthentications, extra.MeshTLSAuthentications, func(o *policyv1.MeshTLSAuthentication) string { return o.Namespace + "/" + o.Name })
	in.NetworkAuthentications = mergeObjects(in.NetworkAuthentications, extra.NetworkAuthentications, func(o *policyv1.NetworkAuthentication) string { return o.Namespace + "/" + o.Name })
	in.HTTPRoutes = mergeObjects(in.HTTPRoutes, extra.HTTPRoutes, func(o *gatewayv1.HTTPRoute) string { return o.Namespace + "/" + o.Name })
	in.GRPCRoutes = mergeObjects(in.GRPCRoutes, extra.GRPCRoutes, func(o *gatewayv1.GRPCRoute) string { return o.Namespace + "/" + o.Name })
	return NewCompiler(c.cfg, c.shadow.log).Update(in)
}

func mergeObjects[T any](live, extra []*T, key func(*T) string) []*T {
	replaced := map[string]bool{}
	for _, o := range extra {
		replaced[key(o)] = true
	}
	out := slices.Clone(extra)
	for _, o := range live {
		if !replaced[key(o)] {
			out = append(out, o)
		}
	}
	return out
}
