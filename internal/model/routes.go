package model

import (
	"cmp"
	"context"
	"reflect"
	"slices"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Routes are the Gateway API routes in effect, as the sources read them
// (not validated: the policy compiler does that). Values handed out are
// shared and must not be modified.
type Routes struct {
	// HTTP and GRPC are sorted by namespace, then name.
	HTTP []*gatewayv1.HTTPRoute
	GRPC []*gatewayv1.GRPCRoute
	// Version grows with every change of the routes.
	Version uint64
}

// routeStore keeps the routes each source wrote, and who watches them.
// Its fields are guarded by Model.mu.
type routeStore struct {
	http     map[objKey]bySource[gatewayv1.HTTPRoute]
	grpc     map[objKey]bySource[gatewayv1.GRPCRoute]
	version  uint64
	watchers map[chan struct{}]struct{}
}

// SetHTTPRoute adds or replaces an HTTPRoute.
func (w *Writer) SetHTTPRoute(r *gatewayv1.HTTPRoute) {
	w.m.writeRoutes(func(rs *routeStore) bool { return setRoute(&rs.http, w.source, r) })
}

// DeleteHTTPRoute removes an HTTPRoute; unknown names are ignored.
func (w *Writer) DeleteHTTPRoute(namespace, name string) {
	w.m.writeRoutes(func(rs *routeStore) bool { return deleteRoute(rs.http, w.source, keyOf(namespace, name)) })
}

// SetGRPCRoute adds or replaces a GRPCRoute.
func (w *Writer) SetGRPCRoute(r *gatewayv1.GRPCRoute) {
	w.m.writeRoutes(func(rs *routeStore) bool { return setRoute(&rs.grpc, w.source, r) })
}

// DeleteGRPCRoute removes a GRPCRoute; unknown names are ignored.
func (w *Writer) DeleteGRPCRoute(namespace, name string) {
	w.m.writeRoutes(func(rs *routeStore) bool { return deleteRoute(rs.grpc, w.source, keyOf(namespace, name)) })
}

// replaceRoutes makes snap's routes the source's whole set of routes;
// Replace calls it under the lock.
func (m *Model) replaceRoutes(source string, snap Snapshot) {
	rs := &m.routes
	changed := replaceLayer(&rs.http, source, snap.HTTPRoutes)
	changed = replaceLayer(&rs.grpc, source, snap.GRPCRoutes) || changed
	if changed {
		rs.changed()
	}
}

// Routes returns the routes in effect now.
func (m *Model) Routes() Routes {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Routes{HTTP: effectiveRoutes[gatewayv1.HTTPRoute, *gatewayv1.HTTPRoute](m.routes.http), GRPC: effectiveRoutes[gatewayv1.GRPCRoute, *gatewayv1.GRPCRoute](m.routes.grpc), Version: m.routes.version}
}

// Service returns the Service in effect under namespace/name: what a
// route's parentRefs and backendRefs name, and whose annotations give its
// policy's defaults.
func (m *Model) Service(namespace, name string) (Service, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.services[keyOf(namespace, name)].effective()
	if s == nil {
		return Service{}, false
	}
	return *s, true
}

// WatchRoutes calls update with the routes in effect as soon as it is
// registered and again after changes, until ctx is done. A change of any
// Service (its annotations and ports are the policy's too) counts as a
// change of the routes. Changes that come
// while update runs are seen together in its next call, never lost. update
// is called from one goroutine, which WatchRoutes starts and ctx stops.
func (m *Model) WatchRoutes(ctx context.Context, update func(Routes)) {
	signal := make(chan struct{}, 1)
	signal <- struct{}{}
	m.mu.Lock()
	if m.routes.watchers == nil {
		m.routes.watchers = map[chan struct{}]struct{}{}
	}
	m.routes.watchers[signal] = struct{}{}
	m.mu.Unlock()
	go func() {
		defer func() {
			m.mu.Lock()
			delete(m.routes.watchers, signal)
			m.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-signal:
				update(m.Routes())
			}
		}
	}()
}

func (m *Model) writeRoutes(apply func(*routeStore) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if apply(&m.routes) {
		m.routes.changed()
	}
}

// changed counts a change and wakes every watcher (a watcher already awake
// reads the new state anyway).
func (rs *routeStore) changed() {
	rs.version++
	for signal := range rs.watchers {
		select {
		case signal <- struct{}{}:
		default:
		}
	}
}

// routePtr is what the model needs of a route kind T (HTTPRoute,
// GRPCRoute): a pointer to it with its object metadata.
type routePtr[T any] interface {
	*T
	GetNamespace() string
	GetName() string
	GetResourceVersion() string
}

func routeKey[T any, R routePtr[T]](r R) objKey { return keyOf(r.GetNamespace(), r.GetName()) }

// setRoute writes one source's route and reports whether that changed
// anything. An informer's resync (the same resourceVersion) or a reload of
// an unchanged file (an equal object) is no change.
func setRoute[T any, R routePtr[T]](layers *map[objKey]bySource[T], source string, r R) bool {
	if *layers == nil {
		*layers = map[objKey]bySource[T]{}
	}
	key := routeKey[T](r)
	if cur := R((*layers)[key][source]); cur != nil {
		sameVersion := r.GetResourceVersion() != "" && cur.GetResourceVersion() == r.GetResourceVersion()
		if sameVersion || reflect.DeepEqual(cur, r) {
			return false
		}
	}
	before, after := setLayer(*layers, key, source, (*T)(r))
	return before != after
}

func deleteRoute[T any](layers map[objKey]bySource[T], source string, key objKey) bool {
	if _, ok := layers[key][source]; !ok {
		return false
	}
	before, after := setLayer(layers, key, source, nil)
	return before != after
}

// replaceLayer makes routes the source's whole layer and reports whether
// any route in effect changed.
func replaceLayer[T any, R routePtr[T]](layers *map[objKey]bySource[T], source string, routes []R) bool {
	if *layers == nil {
		*layers = map[objKey]bySource[T]{}
	}
	keep := map[objKey]bool{}
	for _, r := range routes {
		keep[routeKey[T](r)] = true
	}
	changed := false
	for key, b := range *layers {
		if _, ok := b[source]; ok && !keep[key] {
			changed = deleteRoute(*layers, source, key) || changed
		}
	}
	for _, r := range routes {
		changed = setRoute(layers, source, r) || changed
	}
	return changed
}

func effectiveRoutes[T any, R routePtr[T]](layers map[objKey]bySource[T]) []R {
	out := make([]R, 0, len(layers))
	for _, b := range layers {
		out = append(out, R(b.effective()))
	}
	slices.SortFunc(out, func(a, b R) int {
		return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
	})
	return out
}
