package model

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// PolicyInputs is what the outbound policy of every destination is compiled
// from: the effective Services (with their annotations) and Gateway API
// routes of all sources. The objects are shared and must not be modified.
type PolicyInputs struct {
	// Version grows with every change of a Service or a route; two inputs
	// with the same Version are the same.
	Version uint64
	// ClusterDomain is the DNS suffix of service names ("cluster.local").
	ClusterDomain string
	// Services, HTTPRoutes and GRPCRoutes are sorted by namespace/name.
	Services   []*Service
	HTTPRoutes []*gatewayv1.HTTPRoute
	GRPCRoutes []*gatewayv1.GRPCRoute
}

// ClusterDomain is the DNS suffix of service names the model answers for.
func (m *Model) ClusterDomain() string { return m.clusterDomain }

// PolicyInputs returns the current inputs of the outbound policy.
func (m *Model) PolicyInputs() PolicyInputs {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.policyInputs()
}

// policyInputs is PolicyInputs with m.mu held.
func (m *Model) policyInputs() PolicyInputs {
	in := PolicyInputs{Version: m.policyVersion, ClusterDomain: m.clusterDomain}
	for _, key := range sortedKeys(m.services) {
		in.Services = append(in.Services, m.services[key].effective())
	}
	for _, key := range sortedKeys(m.httpRoutes) {
		in.HTTPRoutes = append(in.HTTPRoutes, m.httpRoutes[key].effective())
	}
	for _, key := range sortedKeys(m.grpcRoutes) {
		in.GRPCRoutes = append(in.GRPCRoutes, m.grpcRoutes[key].effective())
	}
	return in
}

func sortedKeys[T any](layers map[objKey]bySource[T]) []objKey {
	return slices.SortedFunc(maps.Keys(layers), func(a, b objKey) int {
		if c := strings.Compare(a.namespace, b.namespace); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
}

// WatchPolicyInputs calls update with the current policy inputs at once and
// again after every change of a Service or a route, until ctx is done.
// Changes that come faster than update returns are folded into one call
// with the newest inputs. update is called from one goroutine and must not
// call back into the model's writers.
func (m *Model) WatchPolicyInputs(ctx context.Context, update func(PolicyInputs)) {
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	m.mu.Lock()
	m.policyListeners[wake] = struct{}{}
	m.mu.Unlock()

	m.activeWatches.Add(1)
	go func() {
		defer m.activeWatches.Add(-1)
		defer func() {
			m.mu.Lock()
			delete(m.policyListeners, wake)
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
				update(m.PolicyInputs())
			}
		}
	}()
}

// publishPolicy wakes the policy watchers after a write that changed the
// policy inputs. Called with m.mu held.
func (m *Model) publishPolicy() {
	m.policyVersion++
	for wake := range m.policyListeners {
		select {
		case wake <- struct{}{}:
		default: // already woken; it reads the newest inputs
		}
	}
}

// SetHTTPRoute adds or replaces a Gateway API HTTPRoute. The model keeps r:
// the source must not modify it afterwards.
func (w *Writer) SetHTTPRoute(r *gatewayv1.HTTPRoute) {
	w.m.write(func(c *changes) { setRoute(w.m.httpRoutes, w.source, keyOf(r.Namespace, r.Name), r, c) })
}

// DeleteHTTPRoute removes an HTTPRoute; unknown names are ignored.
func (w *Writer) DeleteHTTPRoute(namespace, name string) {
	w.m.write(func(c *changes) {
		setRoute[gatewayv1.HTTPRoute](w.m.httpRoutes, w.source, keyOf(namespace, name), nil, c)
	})
}

// SetGRPCRoute adds or replaces a Gateway API GRPCRoute. The model keeps r:
// the source must not modify it afterwards.
func (w *Writer) SetGRPCRoute(r *gatewayv1.GRPCRoute) {
	w.m.write(func(c *changes) { setRoute(w.m.grpcRoutes, w.source, keyOf(r.Namespace, r.Name), r, c) })
}

// DeleteGRPCRoute removes a GRPCRoute; unknown names are ignored.
func (w *Writer) DeleteGRPCRoute(namespace, name string) {
	w.m.write(func(c *changes) {
		setRoute[gatewayv1.GRPCRoute](w.m.grpcRoutes, w.source, keyOf(namespace, name), nil, c)
	})
}

// setRoute writes one source's route; a route said again (the same spec,
// annotations and creation time: an informer resync, a status update)
// changes nothing.
func setRoute[T gatewayv1.HTTPRoute | gatewayv1.GRPCRoute](layers map[objKey]bySource[T], source string, key objKey, r *T, c *changes) {
	if r != nil {
		if cur := layers[key][source]; cur != nil && sameRoute(cur, r) {
			return
		}
	}
	before, after := setLayer(layers, key, source, r)
	if before != after {
		c.policy = true
		c.inbound = true
	}
}

func sameRoute[T gatewayv1.HTTPRoute | gatewayv1.GRPCRoute](a, b *T) bool {
	switch a := any(a).(type) {
	case *gatewayv1.HTTPRoute:
		b := any(b).(*gatewayv1.HTTPRoute)
		return reflect.DeepEqual(a.Spec, b.Spec) && maps.Equal(a.Annotations, b.Annotations) && a.CreationTimestamp.Equal(&b.CreationTimestamp)
	case *gatewayv1.GRPCRoute:
		b := any(b).(*gatewayv1.GRPCRoute)
		return reflect.DeepEqual(a.Spec, b.Spec) && maps.Equal(a.Annotations, b.Annotations) && a.CreationTimestamp.Equal(&b.CreationTimestamp)
	}
	return false
}
