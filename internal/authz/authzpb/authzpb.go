// Package authzpb converts the inbound policy between internal/authz and
// the protobuf messages of proto/policy, in one place for the controller
// and the proxy. FromProto checks what it reads: a policy it cannot
// convert is an error, never a weaker policy.
package authzpb

import (
	"fmt"
	"net/netip"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/routes/routespb"
	policypb "github.com/skeinmesh/skein/proto/policy"
)

// ToProto converts an inbound policy; nil is a policy that does not exist
// (an instance the controller does not know).
func ToProto(in *authz.Inbound) *policypb.InboundPolicy {
	if in == nil {
		return &policypb.InboundPolicy{}
	}
	out := &policypb.InboundPolicy{
		Exists: true, Port: uint32(in.Port), Server: in.Server, Protocol: in.Protocol,
		DefaultPolicy:  string(in.Default),
		Authorizations: authorizationsToProto(in.Authorizations),
		ProbePaths:     in.ProbePaths,
	}
	for _, p := range in.ClusterNetworks {
		out.ClusterNetworks = append(out.ClusterNetworks, p.String())
	}
	for _, r := range in.Routes {
		out.Routes = append(out.Routes, &policypb.InboundRoute{Name: r.Name, Matches: routespb.MatchesToProto(r.Matches), Authorizations: authorizationsToProto(r.Authorizations)})
	}
	if rl := in.RateLimit; rl != nil {
		out.RateLimit = &policypb.RateLimit{Total: rl.Total, PerIdentity: rl.PerIdentity}
		for _, o := range rl.Overrides {
			out.RateLimit.Overrides = append(out.RateLimit.Overrides, &policypb.RateLimitOverride{RequestsPerSecond: o.RequestsPerSecond, Identities: o.Identities})
		}
	}
	return out
}

func authorizationsToProto(as []authz.Authorization) []*policypb.Authorization {
	var out []*policypb.Authorization
	for _, a := range as {
		pa := &policypb.Authorization{Name: a.Name}
		for _, n := range a.Networks {
			pn := &policypb.Network{Cidr: n.Prefix.String()}
			for _, e := range n.Except {
				pn.Except = append(pn.Except, e.String())
			}
			pa.Networks = append(pa.Networks, pn)
		}
		if a.MeshTLS != nil {
			pa.MeshTls = &policypb.MeshTLS{Identities: a.MeshTLS.Identities, Prefixes: a.MeshTLS.Prefixes}
		}
		out = append(out, pa)
	}
	return out
}

// FromProto converts a policy back; (nil, nil) when it does not exist.
func FromProto(m *policypb.InboundPolicy) (*authz.Inbound, error) {
	if !m.GetExists() {
		return nil, nil
	}
	if m.GetPort() == 0 || m.GetPort() > 65535 {
		return nil, fmt.Errorf("port %d is not a port number", m.GetPort())
	}
	in := &authz.Inbound{
		Port: uint16(m.GetPort()), Server: m.GetServer(), Protocol: m.GetProtocol(),
		Default: authz.DefaultPolicy(m.GetDefaultPolicy()), ProbePaths: m.GetProbePaths(),
	}
	switch in.Default {
	case authz.AllUnauthenticated, authz.AllAuthenticated, authz.ClusterAuthenticated, authz.ClusterUnauthenticated, authz.Deny, authz.Audit:
	default:
		return nil, fmt.Errorf("default policy %q unknown", in.Default)
	}
	var err error
	for _, c := range m.GetClusterNetworks() {
		p, perr := netip.ParsePrefix(c)
		if perr != nil {
			return nil, fmt.Errorf("cluster network: %w", perr)
		}
		in.ClusterNetworks = append(in.ClusterNetworks, p)
	}
	if in.Authorizations, err = authorizationsFromProto(m.GetAuthorizations()); err != nil {
		return nil, err
	}
	for i, r := range m.GetRoutes() {
		route := authz.Route{Name: r.GetName()}
		if route.Matches, err = routespb.MatchesFromProto(r.GetMatches()); err != nil {
			return nil, fmt.Errorf("route %d %s: %w", i, r.GetName(), err)
		}
		if route.Authorizations, err = authorizationsFromProto(r.GetAuthorizations()); err != nil {
			return nil, fmt.Errorf("route %d %s: %w", i, r.GetName(), err)
		}
		in.Routes = append(in.Routes, route)
	}
	if rl := m.GetRateLimit(); rl != nil {
		in.RateLimit = &authz.RateLimit{Total: rl.GetTotal(), PerIdentity: rl.GetPerIdentity()}
		for _, o := range rl.GetOverrides() {
			in.RateLimit.Overrides = append(in.RateLimit.Overrides, authz.RateLimitOverride{RequestsPerSecond: o.GetRequestsPerSecond(), Identities: o.GetIdentities()})
		}
	}
	return in, nil
}

func authorizationsFromProto(as []*policypb.Authorization) ([]authz.Authorization, error) {
	var out []authz.Authorization
	for i, pa := range as {
		a := authz.Authorization{Name: pa.GetName()}
		for _, pn := range pa.GetNetworks() {
			p, err := netip.ParsePrefix(pn.GetCidr())
			if err != nil {
				return nil, fmt.Errorf("authorization %d %s: %w", i, pa.GetName(), err)
			}
			n := authz.Network{Prefix: p}
			for _, e := range pn.GetExcept() {
				ep, err := netip.ParsePrefix(e)
				if err != nil {
					return nil, fmt.Errorf("authorization %d %s: except: %w", i, pa.GetName(), err)
				}
				n.Except = append(n.Except, ep)
			}
			a.Networks = append(a.Networks, n)
		}
		if mt := pa.GetMeshTls(); mt != nil {
			a.MeshTLS = &authz.MeshTLS{Identities: mt.GetIdentities(), Prefixes: mt.GetPrefixes()}
		}
		out = append(out, a)
	}
	return out, nil
}
