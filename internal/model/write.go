package model

import (
	"net/netip"
	"reflect"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Writer is one source's handle on the model. Objects written through it
// belong to that source: Replace swaps exactly them. Every call takes
// effect, and reaches the watchers whose sets it changed, before it
// returns.
type Writer struct {
	m      *Model
	source string
}

// Writer returns the handle of the named source ("files", "kube", ...).
func (m *Model) Writer(source string) *Writer {
	return &Writer{m: m, source: source}
}

// Replace makes snap the source's whole state in one step: watchers never
// see a mix of the old and new state.
func (w *Writer) Replace(snap Snapshot) {
	w.m.write(func(c *changes) {
		m := w.m
		keep := map[objKey]bool{}
		for i := range snap.Services {
			keep[keyOf(snap.Services[i].Namespace, snap.Services[i].Name)] = true
		}
		for key, b := range m.services {
			if _, ok := b[w.source]; ok && !keep[key] {
				m.setService(w.source, key, nil, c)
			}
		}
		clear(keep)
		for i := range snap.Instances {
			keep[keyOf(snap.Instances[i].Namespace, snap.Instances[i].Name)] = true
		}
		for key, b := range m.instances {
			if _, ok := b[w.source]; ok && !keep[key] {
				m.setInstance(w.source, key, nil, c)
			}
		}
		clear(keep)
		for i := range snap.EndpointSlices {
			keep[keyOf(snap.EndpointSlices[i].Namespace, snap.EndpointSlices[i].Name)] = true
		}
		for key, b := range m.slices {
			if _, ok := b[w.source]; ok && !keep[key] {
				m.setSlice(w.source, key, nil, c)
			}
		}
		replaceRoutes(m.httpRoutes, w.source, snap.HTTPRoutes, c)
		replaceRoutes(m.grpcRoutes, w.source, snap.GRPCRoutes, c)
		replacePolicyObjects(m.inbound.servers, w.source, snap.Servers, c)
		replacePolicyObjects(m.inbound.authzs, w.source, snap.AuthorizationPolicies, c)
		replacePolicyObjects(m.inbound.meshTLS, w.source, snap.MeshTLSAuthentications, c)
		replacePolicyObjects(m.inbound.networks, w.source, snap.NetworkAuthentications, c)
		m.replaceNamespaces(w.source, snap.Namespaces, c)
		for i := range snap.Services {
			s := snap.Services[i]
			m.setService(w.source, keyOf(s.Namespace, s.Name), &s, c)
		}
		for i := range snap.Instances {
			m.setInstance(w.source, keyOf(snap.Instances[i].Namespace, snap.Instances[i].Name), newInstance(snap.Instances[i], m.trustDomain), c)
		}
		for i := range snap.EndpointSlices {
			s := snap.EndpointSlices[i]
			m.setSlice(w.source, keyOf(s.Namespace, s.Name), &s, c)
		}
	})
}

// replaceRoutes makes routes the source's whole set of one route kind.
func replaceRoutes[T gatewayv1.HTTPRoute | gatewayv1.GRPCRoute](layers map[objKey]bySource[T], source string, routes []*T, c *changes) {
	keep := map[objKey]*T{}
	for _, r := range routes {
		keep[routeKey(r)] = r
	}
	for key, b := range layers {
		if _, ok := b[source]; ok && keep[key] == nil {
			setRoute[T](layers, source, key, nil, c)
		}
	}
	for key, r := range keep {
		setRoute(layers, source, key, r, c)
	}
}

func routeKey[T gatewayv1.HTTPRoute | gatewayv1.GRPCRoute](r *T) objKey {
	switch r := any(r).(type) {
	case *gatewayv1.HTTPRoute:
		return keyOf(r.Namespace, r.Name)
	case *gatewayv1.GRPCRoute:
		return keyOf(r.Namespace, r.Name)
	}
	return objKey{}
}

// SetService adds or replaces a service.
func (w *Writer) SetService(s Service) {
	w.m.write(func(c *changes) { w.m.setService(w.source, keyOf(s.Namespace, s.Name), &s, c) })
}

// DeleteService removes a service; unknown names are ignored.
func (w *Writer) DeleteService(namespace, name string) {
	w.m.write(func(c *changes) { w.m.setService(w.source, keyOf(namespace, name), nil, c) })
}

// SetInstance adds or replaces a workload instance.
func (w *Writer) SetInstance(i Instance) {
	w.m.write(func(c *changes) {
		w.m.setInstance(w.source, keyOf(i.Namespace, i.Name), newInstance(i, w.m.trustDomain), c)
	})
}

// DeleteInstance removes a workload instance; unknown names are ignored.
func (w *Writer) DeleteInstance(namespace, name string) {
	w.m.write(func(c *changes) { w.m.setInstance(w.source, keyOf(namespace, name), nil, c) })
}

// SetEndpointSlice adds or replaces an endpoint slice.
func (w *Writer) SetEndpointSlice(s EndpointSlice) {
	w.m.write(func(c *changes) { w.m.setSlice(w.source, keyOf(s.Namespace, s.Name), &s, c) })
}

// DeleteEndpointSlice removes an endpoint slice; unknown names are ignored.
func (w *Writer) DeleteEndpointSlice(namespace, name string) {
	w.m.write(func(c *changes) { w.m.setSlice(w.source, keyOf(namespace, name), nil, c) })
}

func keyOf(namespace, name string) objKey { return objKey{namespace, name} }

func newInstance(i Instance, trustDomain string) *instance {
	in := &instance{Instance: i, labels: map[string]map[string]string{}}
	if i.Meshed {
		in.identity = Identity(trustDomain, i.Namespace, i.ServiceAccount)
	}
	return in
}

// Identity is the SPIFFE ID of a service account:
// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, with the
// service account "default" when empty.
func Identity(trustDomain, namespace, serviceAccount string) string {
	if serviceAccount == "" {
		serviceAccount = "default"
	}
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}

// changes collects what one write touched; publish turns it into the
// destinations to recompute.
type changes struct {
	services map[objKey]struct{}
	ips      map[netip.Addr]struct{}
	// policy is set when a Service or a route changed: the policy
	// compiler's inputs.
	policy bool
	// inbound is set when anything the inbound policy reads changed: an
	// instance, a namespace, a policy.skein.io object or a route.
	inbound bool
}

func (c *changes) service(k objKey) { c.services[k] = struct{}{} }

func (c *changes) ip(a netip.Addr) {
	if a.IsValid() {
		c.ips[a] = struct{}{}
	}
}

// write runs apply under the lock, then recomputes and publishes every
// destination it touched before unlocking, so watchers see writes in order.
func (m *Model) write(apply func(*changes)) {
	c := &changes{services: map[objKey]struct{}{}, ips: map[netip.Addr]struct{}{}}
	m.mu.Lock()
	defer m.mu.Unlock()
	apply(c)
	m.publish(c)
	if c.policy {
		m.publishPolicy()
	}
	if c.inbound {
		m.publishInbound()
	}
}

func (m *Model) setService(source string, key objKey, s *Service, c *changes) {
	if s != nil {
		if cur := m.services[key][source]; cur != nil && reflect.DeepEqual(*cur, *s) {
			return // said again
		}
	}
	before, after := setLayer(m.services, key, source, s)
	if before == after {
		return
	}
	c.service(key)
	c.policy = true
	if before != nil {
		removeFrom(m.servicesByNS, key.namespace, key)
		for _, ip := range before.ClusterIPs {
			removeFrom(m.servicesByIP, ip, key)
			c.ip(ip)
		}
	}
	if after != nil {
		addTo(m.servicesByNS, key.namespace, key, after)
		for _, ip := range after.ClusterIPs {
			addTo(m.servicesByIP, ip, key, struct{}{})
			c.ip(ip)
		}
	}
}

func (m *Model) setInstance(source string, key objKey, in *instance, c *changes) {
	if in != nil {
		if cur := m.instances[key][source]; cur != nil && cur.Instance.equal(in.Instance) {
			// Said again (a reload, an informer update of fields the model
			// does not keep): nothing to recompute, and the endpoint keeps
			// its label maps.
			return
		}
	}
	before, after := setLayer(m.instances, key, source, in)
	if before == after {
		return
	}
	c.inbound = true
	for _, i := range []*instance{before, after} {
		if i == nil {
			continue
		}
		c.ip(i.IP)
		for svcKey, svc := range m.servicesByNS[key.namespace] {
			if selects(svc.Selector, i.Labels) {
				c.service(svcKey)
			}
		}
		for svcKey := range m.sliceRefs[endpointRef{pod: key}] {
			c.service(svcKey)
		}
		if i.IP.IsValid() {
			for svcKey := range m.sliceRefs[endpointRef{ip: i.IP}] {
				c.service(svcKey)
			}
		}
	}
	if before != nil {
		removeFrom(m.instancesByNS, key.namespace, key)
		if before.IP.IsValid() {
			removeFrom(m.instancesByIP, before.IP, key)
		}
	}
	if after != nil {
		addTo(m.instancesByNS, key.namespace, key, after)
		if after.IP.IsValid() {
			addTo(m.instancesByIP, after.IP, key, struct{}{})
		}
	}
}

func (m *Model) setSlice(source string, key objKey, s *EndpointSlice, c *changes) {
	if s != nil {
		if cur := m.slices[key][source]; cur != nil && reflect.DeepEqual(*cur, *s) {
			return // said again
		}
	}
	before, after := setLayer(m.slices, key, source, s)
	if before == after {
		return
	}
	if before != nil {
		svcKey := keyOf(key.namespace, before.Service)
		c.service(svcKey)
		removeFrom(m.slicesByService, svcKey, key)
		m.countRefs(before, svcKey, -1)
	}
	if after != nil {
		svcKey := keyOf(key.namespace, after.Service)
		c.service(svcKey)
		addTo(m.slicesByService, svcKey, key, after)
		m.countRefs(after, svcKey, +1)
	}
}

func (m *Model) countRefs(s *EndpointSlice, svcKey objKey, delta int) {
	for _, ep := range s.Endpoints {
		for _, ref := range sliceEndpointRefs(s.Namespace, ep) {
			n := m.sliceRefs[ref][svcKey] + delta
			if n > 0 {
				addTo(m.sliceRefs, ref, svcKey, n)
			} else {
				removeFrom(m.sliceRefs, ref, svcKey)
			}
		}
	}
}

func sliceEndpointRefs(namespace string, ep SliceEndpoint) []endpointRef {
	if ep.Pod != "" {
		return []endpointRef{{pod: keyOf(namespace, ep.Pod)}}
	}
	refs := make([]endpointRef, 0, len(ep.Addresses))
	for _, a := range ep.Addresses {
		refs = append(refs, endpointRef{ip: a})
	}
	return refs
}

// selects reports whether a non-empty selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
