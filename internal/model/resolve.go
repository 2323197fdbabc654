package model

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// A destination is watched by service name and port, or by IP and port (a
// service's cluster IP or an instance's own address); anything else is a
// name the model will never know.
type topicKind uint8

const (
	byServiceName topicKind = iota
	byIP
	foreign
)

type topicKey struct {
	kind    topicKind
	service objKey     // byServiceName
	addr    netip.Addr // byIP
	host    string     // foreign
	port    uint16
}

// parseDst reads "name.namespace.svc.<cluster-domain>:port" or "ip:port".
func (m *Model) parseDst(dst string) (topicKey, error) {
	host, portText, err := net.SplitHostPort(dst)
	if err != nil {
		return topicKey{}, fmt.Errorf("destination %q: %w", dst, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return topicKey{}, fmt.Errorf("destination %q: port %q is not 1-65535", dst, portText)
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return topicKey{kind: byIP, addr: addr.Unmap(), port: uint16(port)}, nil
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if rest, ok := strings.CutSuffix(name, ".svc."+m.clusterDomain); ok {
		svc, ns, ok := strings.Cut(rest, ".")
		if ok && svc != "" && ns != "" && !strings.Contains(ns, ".") {
			return topicKey{kind: byServiceName, service: keyOf(ns, svc), port: uint16(port)}, nil
		}
	}
	return topicKey{kind: foreign, host: name, port: uint16(port)}, nil
}

var notFound = &EndpointSet{}

// resolve computes the current set of a destination. Called with m.mu held.
func (m *Model) resolve(k topicKey) *EndpointSet {
	switch k.kind {
	case byServiceName:
		if svc := m.services[k.service].effective(); svc != nil {
			return m.serviceSet(svc, k.port)
		}
	case byIP:
		if svcKey, ok := first(m.servicesByIP[k.addr]); ok {
			return m.serviceSet(m.services[svcKey].effective(), k.port)
		}
		if instKey, ok := first(m.instancesByIP[k.addr]); ok {
			return instanceSet(m.instances[instKey].effective(), k.port)
		}
	}
	return notFound
}

// first picks the smallest key of a set, so that conflicts (two services
// claiming one IP) resolve the same way every time.
func first(set map[objKey]struct{}) (objKey, bool) {
	var best objKey
	found := false
	for k := range set {
		if !found || k.namespace < best.namespace || (k.namespace == best.namespace && k.name < best.name) {
			best, found = k, true
		}
	}
	return best, found
}

// instanceSet answers a proxy that dials an instance's address directly:
// that one endpoint, ready or not, since the caller chose it.
func instanceSet(i *instance, port uint16) *EndpointSet {
	return &EndpointSet{
		Exists: true,
		Endpoints: []Endpoint{{
			Addr:     netip.AddrPortFrom(i.IP, port),
			Weight:   1,
			Labels:   i.endpointLabels(""),
			Identity: i.identity,
		}},
	}
}

func (m *Model) serviceSet(svc *Service, port uint16) *EndpointSet {
	i := slices.IndexFunc(svc.Ports, func(p ServicePort) bool { return p.Port == port })
	if i < 0 {
		return notFound
	}
	sp := svc.Ports[i]
	set := &EndpointSet{
		Exists:      true,
		Service:     svc.Namespace + "/" + svc.Name,
		OpaquePorts: svc.OpaquePorts,
	}
	protocol := ""
	if slices.Contains(svc.OpaquePorts, port) {
		protocol = "opaque"
	}
	if sliceSet := m.slicesByService[keyOf(svc.Namespace, svc.Name)]; len(sliceSet) > 0 {
		set.Endpoints = append(m.sliceEndpoints(svc, sp, sliceSet), m.selectedEndpoints(svc, sp, true)...)
	} else {
		set.Endpoints = m.selectedEndpoints(svc, sp, false)
	}
	for i := range set.Endpoints {
		set.Endpoints[i].Protocol = protocol
	}
	slices.SortFunc(set.Endpoints, func(a, b Endpoint) int { return a.Addr.Compare(b.Addr) })
	set.Endpoints = slices.CompactFunc(set.Endpoints, func(a, b Endpoint) bool { return a.Addr == b.Addr })
	return set
}

// selectedEndpoints picks the ready instances the service's selector
// matches: all of them for a service without EndpointSlices (the manifest
// directory), the External ones only for a service with slices.
func (m *Model) selectedEndpoints(svc *Service, sp ServicePort, externalOnly bool) []Endpoint {
	if len(svc.Selector) == 0 {
		return nil
	}
	candidates := m.instancesByNS[svc.Namespace]
	eps := make([]Endpoint, 0, len(candidates))
	for _, in := range candidates {
		if !in.Ready || !in.IP.IsValid() || (externalOnly && !in.External) || !selects(svc.Selector, in.Labels) {
			continue
		}
		port := sp.TargetPort
		if sp.TargetPortName != "" {
			port = in.Ports[sp.TargetPortName]
		} else if port == 0 {
			port = sp.Port
		}
		if port == 0 {
			continue
		}
		eps = append(eps, m.endpoint(svc, in, netip.AddrPortFrom(in.IP, port)))
	}
	return eps
}

// sliceEndpoints lists the ready addresses of the service's slices.
func (m *Model) sliceEndpoints(svc *Service, sp ServicePort, sliceSet map[objKey]*EndpointSlice) []Endpoint {
	var eps []Endpoint
	for _, s := range sliceSet {
		i := slices.IndexFunc(s.Ports, func(p SlicePort) bool { return p.Name == sp.Name })
		if i < 0 || s.Ports[i].Port == 0 {
			continue
		}
		port := s.Ports[i].Port
		for _, ep := range s.Endpoints {
			if !ep.Ready {
				continue
			}
			for _, addr := range ep.Addresses {
				in := m.sliceInstance(svc.Namespace, ep.Pod, addr)
				eps = append(eps, m.endpoint(svc, in, netip.AddrPortFrom(addr.Unmap(), port)))
				if in == nil && ep.Pod != "" {
					eps[len(eps)-1].Labels["pod"] = ep.Pod
				}
			}
		}
	}
	return eps
}

func (m *Model) sliceInstance(namespace, pod string, addr netip.Addr) *instance {
	if pod != "" {
		return m.instances[keyOf(namespace, pod)].effective()
	}
	if k, ok := first(m.instancesByIP[addr.Unmap()]); ok {
		return m.instances[k].effective()
	}
	return nil
}

// endpoint builds one service endpoint; in may be nil when a slice names an
// address the model has no instance for (no identity, fewer labels).
func (m *Model) endpoint(svc *Service, in *instance, addr netip.AddrPort) Endpoint {
	if in == nil {
		return Endpoint{Addr: addr, Weight: 1, Labels: map[string]string{"namespace": svc.Namespace, "service": svc.Name}}
	}
	return Endpoint{Addr: addr, Weight: 1, Labels: in.endpointLabels(svc.Name), Identity: in.identity}
}

func setsEqual(a, b *EndpointSet) bool {
	if a == b {
		return true
	}
	if a.Exists != b.Exists || a.Service != b.Service || !slices.Equal(a.OpaquePorts, b.OpaquePorts) {
		return false
	}
	return slices.EqualFunc(a.Endpoints, b.Endpoints, func(x, y Endpoint) bool {
		return x.Addr == y.Addr && x.Weight == y.Weight && x.Identity == y.Identity &&
			x.Protocol == y.Protocol && maps.Equal(x.Labels, y.Labels)
	})
}
