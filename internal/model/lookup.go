package model

import (
	"cmp"
	"net/netip"
	"slices"
)

// Instances lists the instances of namespace, sorted by name. The values
// share maps with the model and must not be modified.
func (m *Model) Instances(namespace string) []Instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Instance, 0, len(m.instancesByNS[namespace]))
	for _, in := range m.instancesByNS[namespace] {
		out = append(out, in.Instance)
	}
	sortInstances(out)
	return out
}

// ServiceInstances lists the instances behind a service, sorted by name:
// those its EndpointSlices name (plus the External instances its selector
// picks) or, for a service without slices, those its selector picks. ok is
// false when the model has no such service.
func (m *Model) ServiceInstances(namespace, name string) (instances []Instance, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	svc := m.services[keyOf(namespace, name)].effective()
	if svc == nil {
		return nil, false
	}
	seen := map[objKey]bool{}
	add := func(in *instance) {
		if in != nil && !seen[keyOf(in.Namespace, in.Name)] {
			seen[keyOf(in.Namespace, in.Name)] = true
			instances = append(instances, in.Instance)
		}
	}
	sliceSet := m.slicesByService[keyOf(namespace, name)]
	for _, s := range sliceSet {
		for _, ep := range s.Endpoints {
			for _, addr := range ep.Addresses {
				add(m.sliceInstance(namespace, ep.Pod, addr))
			}
		}
	}
	if len(svc.Selector) > 0 {
		for _, in := range m.instancesByNS[namespace] {
			if (len(sliceSet) == 0 || in.External) && selects(svc.Selector, in.Labels) {
				add(in)
			}
		}
	}
	sortInstances(instances)
	return instances, true
}

// NamespaceAnnotations are the skein.io/ annotations of a namespace (nil
// when the model knows none). The map is shared and must not be modified.
func (m *Model) NamespaceAnnotations(name string) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ns := m.inbound.namespaces[keyOf("", name)].effective(); ns != nil {
		return ns.Annotations
	}
	return nil
}

func sortInstances(s []Instance) {
	slices.SortFunc(s, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

// Service is the service namespace/name as in effect; ok is false when the
// model has none. Its maps and slices are shared and must not be modified.
func (m *Model) Service(namespace, name string) (svc Service, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.services[keyOf(namespace, name)].effective(); s != nil {
		return *s, true
	}
	return Service{}, false
}

// InstanceAt is the instance with address ip (the first by namespace and
// name when several claim it); ok is false when none does.
func (m *Model) InstanceAt(ip netip.Addr) (in Instance, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, found := first(m.instancesByIP[ip.Unmap()]); found {
		if i := m.instances[k].effective(); i != nil {
			return i.Instance, true
		}
	}
	return Instance{}, false
}
