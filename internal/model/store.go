package model

import (
	"net/netip"
	"sync"
	"sync/atomic"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Model holds what the sources wrote and answers Watch. It is safe for
// concurrent use. Create it with New.
type Model struct {
	trustDomain   string
	clusterDomain string

	mu sync.Mutex
	// Objects by namespace/name, then by the source that wrote them. When
	// two sources write the same object the one with the smallest source
	// name is in effect; the indexes below cover effective objects only.
	services  map[objKey]bySource[Service]
	instances map[objKey]bySource[instance]
	slices    map[objKey]bySource[EndpointSlice]
	// Gateway API routes, read by the policy compiler only.
	httpRoutes map[objKey]bySource[gatewayv1.HTTPRoute]
	grpcRoutes map[objKey]bySource[gatewayv1.GRPCRoute]

	servicesByNS    map[string]map[objKey]*Service
	servicesByIP    map[netip.Addr]map[objKey]struct{}
	instancesByNS   map[string]map[objKey]*instance
	instancesByIP   map[netip.Addr]map[objKey]struct{}
	slicesByService map[objKey]map[objKey]*EndpointSlice
	// sliceRefs counts, per pod or address, the slice endpoints of each
	// service that point at it: a changed instance changes those services.
	sliceRefs map[endpointRef]map[objKey]int

	topics          map[topicKey]*topic
	topicsByService map[objKey]map[*topic]struct{}
	topicsByIP      map[netip.Addr]map[*topic]struct{}

	// policyListeners are the WatchPolicyInputs calls, woken when a
	// Service or a route changes; policyVersion counts those changes.
	policyListeners map[chan struct{}]struct{}
	policyVersion   uint64

	// inbound holds the policy.skein.io objects and namespaces, and the
	// WatchInboundInputs calls.
	inbound inboundStore

	activeWatches atomic.Int64
	// versions numbers the sets handed out (see EndpointSet.Version).
	versions uint64
}

// Option configures a Model.
type Option func(*Model)

// WithTrustDomain sets the trust domain of SPIFFE identities
// (default "cluster.local").
func WithTrustDomain(domain string) Option {
	return func(m *Model) { m.trustDomain = domain }
}

// WithClusterDomain sets the DNS suffix of service names
// (default "cluster.local").
func WithClusterDomain(domain string) Option {
	return func(m *Model) { m.clusterDomain = domain }
}

// New returns an empty model.
func New(opts ...Option) *Model {
	m := &Model{
		trustDomain:     "cluster.local",
		clusterDomain:   "cluster.local",
		services:        map[objKey]bySource[Service]{},
		instances:       map[objKey]bySource[instance]{},
		slices:          map[objKey]bySource[EndpointSlice]{},
		httpRoutes:      map[objKey]bySource[gatewayv1.HTTPRoute]{},
		grpcRoutes:      map[objKey]bySource[gatewayv1.GRPCRoute]{},
		policyListeners: map[chan struct{}]struct{}{},
		inbound:         newInboundStore(),
		servicesByNS:    map[string]map[objKey]*Service{},
		servicesByIP:    map[netip.Addr]map[objKey]struct{}{},
		instancesByNS:   map[string]map[objKey]*instance{},
		instancesByIP:   map[netip.Addr]map[objKey]struct{}{},
		slicesByService: map[objKey]map[objKey]*EndpointSlice{},
		sliceRefs:       map[endpointRef]map[objKey]int{},
		topics:          map[topicKey]*topic{},
		topicsByService: map[objKey]map[*topic]struct{}{},
		topicsByIP:      map[netip.Addr]map[*topic]struct{}{},
	}
	for _, opt := range opts {
		opt(m)
	}
	return m
}

type objKey struct{ namespace, name string }

func (k objKey) String() string { return k.namespace + "/" + k.name }

// endpointRef is what a slice endpoint points at: a pod, or failing that an
// address.
type endpointRef struct {
	pod objKey
	ip  netip.Addr
}

// instance is an Instance with what every endpoint built from it shares,
// computed once when it is written.
type instance struct {
	Instance
	identity string
	// labels caches the endpoint label map per service name ("" for the
	// instance's own address), so unchanged endpoints keep the same map.
	labels map[string]map[string]string
}

func (i *instance) endpointLabels(service string) map[string]string {
	if l, ok := i.labels[service]; ok {
		return l
	}
	l := map[string]string{"namespace": i.Namespace, "workload": i.Workload, "pod": i.Name}
	if service != "" {
		l["service"] = service
	}
	i.labels[service] = l
	return l
}

// bySource holds one object as written by each source.
type bySource[T any] map[string]*T

// effective is the object of the smallest source name, or nil.
func (b bySource[T]) effective() *T {
	var best string
	var obj *T
	for source, o := range b {
		if obj == nil || source < best {
			best, obj = source, o
		}
	}
	return obj
}

// setLayer writes (or, with a nil obj, deletes) one source's object and
// returns the effective object before and after.
func setLayer[T any](layers map[objKey]bySource[T], key objKey, source string, obj *T) (before, after *T) {
	b := layers[key]
	before = b.effective()
	switch {
	case obj != nil && b == nil:
		layers[key] = bySource[T]{source: obj}
	case obj != nil:
		b[source] = obj
	case b != nil:
		delete(b, source)
		if len(b) == 0 {
			delete(layers, key)
		}
	}
	return before, layers[key].effective()
}

// addTo and removeFrom maintain the two-level index maps.
func addTo[K, K2 comparable, V any](index map[K]map[K2]V, k K, k2 K2, v V) {
	inner := index[k]
	if inner == nil {
		inner = map[K2]V{}
		index[k] = inner
	}
	inner[k2] = v
}

func removeFrom[K, K2 comparable, V any](index map[K]map[K2]V, k K, k2 K2) {
	if inner := index[k]; inner != nil {
		delete(inner, k2)
		if len(inner) == 0 {
			delete(index, k)
		}
	}
}
