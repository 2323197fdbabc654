package model

import (
	"context"
	"maps"
	"reflect"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
)

// Namespace is what the inbound policy needs of a namespace: its
// skein.io/ annotations (skein.io/default-inbound-policy).
type Namespace struct {
	Name        string
	Annotations map[string]string
}

// ProbePath is an HTTP GET probe of an instance: kubelet's readiness,
// liveness or startup probe, or a Workload's readinessProbe.
type ProbePath struct {
	Port uint16
	Path string
}

// InboundInputs is what the inbound policy of every workload port is
// compiled from. The objects are shared and must not be modified.
type InboundInputs struct {
	// Version grows with every change of anything below.
	Version     uint64
	TrustDomain string
	// Every slice is sorted by namespace/name.
	Instances              []Instance
	Namespaces             []Namespace
	Servers                []*policyv1.Server
	AuthorizationPolicies  []*policyv1.AuthorizationPolicy
	MeshTLSAuthentications []*policyv1.MeshTLSAuthentication
	NetworkAuthentications []*policyv1.NetworkAuthentication
	HTTPRoutes             []*gatewayv1.HTTPRoute
	GRPCRoutes             []*gatewayv1.GRPCRoute
}

// policyObject is one of the policy.skein.io kinds.
type policyObject interface {
	policyv1.Server | policyv1.AuthorizationPolicy | policyv1.MeshTLSAuthentication | policyv1.NetworkAuthentication
}

// inboundStore holds the policy.skein.io objects and namespaces of every
// source, guarded by Model.mu.
type inboundStore struct {
	servers    map[objKey]bySource[policyv1.Server]
	authzs     map[objKey]bySource[policyv1.AuthorizationPolicy]
	meshTLS    map[objKey]bySource[policyv1.MeshTLSAuthentication]
	networks   map[objKey]bySource[policyv1.NetworkAuthentication]
	namespaces map[objKey]bySource[Namespace]

	listeners map[chan struct{}]struct{}
	version   uint64
}

func newInboundStore() inboundStore {
	return inboundStore{
		servers:    map[objKey]bySource[policyv1.Server]{},
		authzs:     map[objKey]bySource[policyv1.AuthorizationPolicy]{},
		meshTLS:    map[objKey]bySource[policyv1.MeshTLSAuthentication]{},
		networks:   map[objKey]bySource[policyv1.NetworkAuthentication]{},
		namespaces: map[objKey]bySource[Namespace]{},
		listeners:  map[chan struct{}]struct{}{},
	}
}

// InboundInputs returns the current inputs of the inbound policy.
func (m *Model) InboundInputs() InboundInputs {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &m.inbound
	in := InboundInputs{Version: s.version, TrustDomain: m.trustDomain}
	for _, key := range sortedKeys(m.instances) {
		in.Instances = append(in.Instances, m.instances[key].effective().Instance)
	}
	for _, key := range sortedKeys(s.namespaces) {
		in.Namespaces = append(in.Namespaces, *s.namespaces[key].effective())
	}
	in.Servers = effectiveAll(s.servers)
	in.AuthorizationPolicies = effectiveAll(s.authzs)
	in.MeshTLSAuthentications = effectiveAll(s.meshTLS)
	in.NetworkAuthentications = effectiveAll(s.networks)
	in.HTTPRoutes = effectiveAll(m.httpRoutes)
	in.GRPCRoutes = effectiveAll(m.grpcRoutes)
	return in
}

func effectiveAll[T any](layers map[objKey]bySource[T]) []*T {
	out := make([]*T, 0, len(layers))
	for _, key := range sortedKeys(layers) {
		out = append(out, layers[key].effective())
	}
	return out
}

// TrustDomain is the trust domain of the identities the model hands out.
func (m *Model) TrustDomain() string { return m.trustDomain }

// WatchInboundInputs calls update with the current inbound inputs at once
// and again after every change of an instance, a namespace, a
// policy.skein.io object or a route, until ctx is done; as
// WatchPolicyInputs, changes are folded and update runs on one goroutine.
func (m *Model) WatchInboundInputs(ctx context.Context, update func(InboundInputs)) {
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	m.mu.Lock()
	m.inbound.listeners[wake] = struct{}{}
	m.mu.Unlock()
	m.activeWatches.Add(1)
	go func() {
		defer m.activeWatches.Add(-1)
		defer func() {
			m.mu.Lock()
			delete(m.inbound.listeners, wake)
			m.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
				if ctx.Err() != nil {
					return
				}
				update(m.InboundInputs())
			}
		}
	}()
}

// publishInbound wakes the inbound watchers. Called with m.mu held.
func (m *Model) publishInbound() {
	m.inbound.version++
	for wake := range m.inbound.listeners {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

// SetServer, SetAuthorizationPolicy, SetMeshTLSAuthentication and
// SetNetworkAuthentication add or replace a policy.skein.io object; the
// model keeps it. The Delete* calls remove one; unknown names are ignored.
func (w *Writer) SetServer(o *policyv1.Server) {
	w.m.write(func(c *changes) { setPolicyObject(w.m.inbound.servers, w.source, keyOf(o.Namespace, o.Name), o, c) })
}

func (w *Writer) DeleteServer(namespace, name string) {
	w.m.write(func(c *changes) {
		setPolicyObject[policyv1.Server](w.m.inbound.servers, w.source, keyOf(namespace, name), nil, c)
	})
}

func (w *Writer) SetAuthorizationPolicy(o *policyv1.AuthorizationPolicy) {
	w.m.write(func(c *changes) { setPolicyObject(w.m.inbound.authzs, w.source, keyOf(o.Namespace, o.Name), o, c) })
}

func (w *Writer) DeleteAuthorizationPolicy(namespace, name string) {
	w.m.write(func(c *changes) {
		setPolicyObject[policyv1.AuthorizationPolicy](w.m.inbound.authzs, w.source, keyOf(namespace, name), nil, c)
	})
}

func (w *Writer) SetMeshTLSAuthentication(o *policyv1.MeshTLSAuthentication) {
	w.m.write(func(c *changes) { setPolicyObject(w.m.inbound.meshTLS, w.source, keyOf(o.Namespace, o.Name), o, c) })
}

func (w *Writer) DeleteMeshTLSAuthentication(namespace, name string) {
	w.m.write(func(c *changes) {
		setPolicyObject[policyv1.MeshTLSAuthentication](w.m.inbound.meshTLS, w.source, keyOf(namespace, name), nil, c)
	})
}

func (w *Writer) SetNetworkAuthentication(o *policyv1.NetworkAuthentication) {
	w.m.write(func(c *changes) { setPolicyObject(w.m.inbound.networks, w.source, keyOf(o.Namespace, o.Name), o, c) })
}

func (w *Writer) DeleteNetworkAuthentication(namespace, name string) {
	w.m.write(func(c *changes) {
		setPolicyObject[policyv1.NetworkAuthentication](w.m.inbound.networks, w.source, keyOf(namespace, name), nil, c)
	})
}

// SetNamespace adds or replaces a namespace's annotations.
func (w *Writer) SetNamespace(ns Namespace) {
	w.m.write(func(c *changes) { setNamespace(w.m.inbound.namespaces, w.source, &ns, keyOf("", ns.Name), c) })
}

// DeleteNamespace forgets a namespace's annotations.
func (w *Writer) DeleteNamespace(name string) {
	w.m.write(func(c *changes) { setNamespace(w.m.inbound.namespaces, w.source, nil, keyOf("", name), c) })
}

func setNamespace(layers map[objKey]bySource[Namespace], source string, ns *Namespace, key objKey, c *changes) {
	if ns != nil {
		if cur := layers[key][source]; cur != nil && maps.Equal(cur.Annotations, ns.Annotations) {
			return
		}
	}
	if before, after := setLayer(layers, key, source, ns); before != after {
		c.inbound = true
	}
}

// setPolicyObject writes one source's object; one said again (the same
// spec, annotations and creation time) changes nothing.
func setPolicyObject[T policyObject](layers map[objKey]bySource[T], source string, key objKey, o *T, c *changes) {
	if o != nil {
		if cur := layers[key][source]; cur != nil && samePolicyObject(cur, o) {
			return
		}
	}
	if before, after := setLayer(layers, key, source, o); before != after {
		c.inbound = true
	}
}

func samePolicyObject[T policyObject](a, b *T) bool {
	ma, mb := objectMetaOf(a), objectMetaOf(b)
	return reflect.DeepEqual(specOf(a), specOf(b)) && maps.Equal(ma.Annotations, mb.Annotations) &&
		ma.CreationTimestamp.Equal(&mb.CreationTimestamp)
}

func objectMetaOf[T policyObject](o *T) *metav1.ObjectMeta {
	switch o := any(o).(type) {
	case *policyv1.Server:
		return &o.ObjectMeta
	case *policyv1.AuthorizationPolicy:
		return &o.ObjectMeta
	case *policyv1.MeshTLSAuthentication:
		return &o.ObjectMeta
	case *policyv1.NetworkAuthentication:
		return &o.ObjectMeta
	}
	panic("unreachable: policyObject is a closed set")
}

func specOf[T policyObject](o *T) any {
	switch o := any(o).(type) {
	case *policyv1.Server:
		return o.Spec
	case *policyv1.AuthorizationPolicy:
		return o.Spec
	case *policyv1.MeshTLSAuthentication:
		return o.Spec
	case *policyv1.NetworkAuthentication:
		return o.Spec
	}
	return nil
}

// replacePolicyObjects makes objs the source's whole set of one kind.
func replacePolicyObjects[T policyObject](layers map[objKey]bySource[T], source string, objs []*T, c *changes) {
	keep := map[objKey]*T{}
	for _, o := range objs {
		m := objectMetaOf(o)
		keep[keyOf(m.Namespace, m.Name)] = o
	}
	for key, b := range layers {
		if _, ok := b[source]; ok && keep[key] == nil {
			setPolicyObject[T](layers, source, key, nil, c)
		}
	}
	for key, o := range keep {
		setPolicyObject(layers, source, key, o, c)
	}
}

func (m *Model) replaceNamespaces(source string, namespaces []Namespace, c *changes) {
	keep := map[objKey]bool{}
	for _, ns := range namespaces {
		keep[keyOf("", ns.Name)] = true
	}
	for key, b := range m.inbound.namespaces {
		if _, ok := b[source]; ok && !keep[key] {
			setNamespace(m.inbound.namespaces, source, nil, key, c)
		}
	}
	for i := range namespaces {
		setNamespace(m.inbound.namespaces, source, &namespaces[i], keyOf("", namespaces[i].Name), c)
	}
}
