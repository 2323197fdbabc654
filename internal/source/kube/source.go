// Package kube feeds the model from a Kubernetes cluster through client-go
// informers: Services, EndpointSlices (discovery/v1), Pods, Namespaces
// (their skein.io/ annotations), the mesh's Workloads (skein.io/v1alpha1:
// VMs and other machines outside the cluster, whose addresses join the
// services that select them), its authorization policy
// (policy.skein.io/v1alpha1) and the Gateway API's HTTPRoutes and
// GRPCRoutes (gateway.networking.k8s.io/v1), the custom resources from when
// their CRDs are served. It only reads. ServiceAccounts are not watched: a
// pod's spec.serviceAccountName is all an identity needs.
package kube

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/skeinmesh/skein/api/v1alpha1"
	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/source"
)

// WorkloadsResource is the mesh's Workload custom resource.
var WorkloadsResource = v1alpha1.GroupVersion.WithResource("workloads")

// Source keeps the model in step with a cluster.
type Source struct {
	client    kubernetes.Interface
	dynamic   dynamic.Interface // nil: Workloads are not read
	model     *model.Writer
	log       *slog.Logger
	resync    time.Duration
	namespace string
	gateway   gatewayclient.Interface // nil: routes are not read
	// optionalRetry is how often to look for a resource (Workloads,
	// routes) that the cluster did not serve at start.
	optionalRetry time.Duration
	synced        chan struct{}

	mu        sync.Mutex
	workloads map[string]int // namespace/name -> instances written
}

// Option configures a Source.
type Option func(*Source)

// WithResync sets the informers' resync period (default 0: none; the model
// needs no periodic replay).
func WithResync(d time.Duration) Option { return func(s *Source) { s.resync = d } }

// WithWorkloads makes the source read the mesh's Workloads through client
// too, if the cluster serves them (the CRDs are installed).
func WithWorkloads(client dynamic.Interface) Option { return func(s *Source) { s.dynamic = client } }

// WithGatewayAPI makes the source read Gateway API HTTPRoutes and
// GRPCRoutes (gateway.networking.k8s.io/v1) through client, each once the
// cluster serves it (the CRDs are installed).
func WithGatewayAPI(client gatewayclient.Interface) Option {
	return func(s *Source) { s.gateway = client }
}

// WithCRDRetry sets how often the source asks whether the API server
// serves a custom resource it does not serve yet (default 30s).
func WithCRDRetry(d time.Duration) Option { return func(s *Source) { s.optionalRetry = d } }

// WithNamespace limits the source to one namespace (default: all).
func WithNamespace(ns string) Option { return func(s *Source) { s.namespace = ns } }

// New returns a source that writes to m as source "kube".
func New(client kubernetes.Interface, m *model.Model, log *slog.Logger, opts ...Option) *Source {
	s := &Source{
		client:    client,
		model:     m.Writer("kube"),
		log:       log.With("source", "kube"),
		synced:    make(chan struct{}),
		workloads: map[string]int{},

		optionalRetry: 30 * time.Second,
	}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Synced is closed once the model holds everything the informers listed at
// start.
func (s *Source) Synced() <-chan struct{} { return s.synced }

// Run watches the cluster until ctx is done. Informer events are applied
// as they come, each a short write to the model.
func (s *Source) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(s.client, s.resync, informers.WithNamespace(s.namespace))
	handlers := []struct {
		informer cache.SharedIndexInformer
		handler  cache.ResourceEventHandler
	}{
		{factory.Core().V1().Services().Informer(), events(s.setService, s.model.DeleteService)},
		{factory.Core().V1().Pods().Informer(), events(s.setPod, s.model.DeleteInstance)},
		{factory.Discovery().V1().EndpointSlices().Informer(), events(s.setSlice, s.model.DeleteEndpointSlice)},
	}
	if s.namespace == "" {
		// Namespaces are cluster-scoped: read them (their
		// skein.io/default-inbound-policy) only when watching them all.
		handlers = append(handlers, struct {
			informer cache.SharedIndexInformer
			handler  cache.ResourceEventHandler
		}{factory.Core().V1().Namespaces().Informer(), events(s.setNamespace, func(_, name string) { s.model.DeleteNamespace(name) })})
	}
	var synced []cache.InformerSynced
	for _, h := range handlers {
		reg, err := h.informer.AddEventHandler(h.handler)
		if err != nil {
			return fmt.Errorf("registering informer handler: %w", err)
		}
		synced = append(synced, reg.HasSynced)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	var late sync.WaitGroup
	defer late.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // on an early return too: the late starters stop first
	for _, r := range s.optionalResources() {
		if err := serves(s.client.Discovery(), r.resource); err != nil {
			// The CRDs may come later (installed after the controller, or
			// the mesh upgraded): the model is complete without them
			// until then. Said once; the look again is quiet.
			s.log.Warn("not reading "+r.what+" yet: the cluster does not serve them ("+r.hint+"); looking again every "+s.optionalRetry.String(), "err", err)
			late.Go(func() { s.startOnceServed(ctx, r) })
			continue
		}
		hasSynced, shutdown, err := r.start(ctx)
		if err != nil {
			return err
		}
		defer shutdown()
		synced = append(synced, hasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // ctx is done
	}
	close(s.synced)
	s.log.Info("informers synced")
	<-ctx.Done()
	return nil
}

// optionalResource is a kind the cluster serves only when its CRDs are
// installed.
type optionalResource struct {
	what     string // in logs: "Workloads", "HTTPRoutes"
	hint     string // in logs: which CRDs to install
	resource schema.GroupVersionResource
	// start starts the kind's informer until ctx is done; shutdown waits
	// for it to stop.
	start func(ctx context.Context) (hasSynced cache.InformerSynced, shutdown func(), err error)
}

// optionalResources are the kinds this source was asked to read that may
// not be served.
func (s *Source) optionalResources() []optionalResource {
	var out []optionalResource
	if s.dynamic != nil {
		const hint = "are Skein's CRDs installed?"
		for _, k := range []struct {
			what     string
			resource schema.GroupVersionResource
			handler  cache.ResourceEventHandler
		}{
			{"Workloads", WorkloadsResource, events(s.setWorkload, s.deleteWorkload)},
			{"Servers", ServersResource, events(setPolicy(s, (*model.Writer).SetServer), s.model.DeleteServer)},
			{"AuthorizationPolicies", AuthorizationPoliciesResource, events(setPolicy(s, (*model.Writer).SetAuthorizationPolicy), s.model.DeleteAuthorizationPolicy)},
			{"MeshTLSAuthentications", MeshTLSAuthenticationsResource, events(setPolicy(s, (*model.Writer).SetMeshTLSAuthentication), s.model.DeleteMeshTLSAuthentication)},
			{"NetworkAuthentications", NetworkAuthenticationsResource, events(setPolicy(s, (*model.Writer).SetNetworkAuthentication), s.model.DeleteNetworkAuthentication)},
		} {
			out = append(out, optionalResource{what: k.what, hint: hint, resource: k.resource, start: s.dynamicStarter(k.resource, k.handler)})
		}
	}
	if s.gateway != nil {
		out = append(out, s.routeResources()...)
	}
	return out
}

// dynamicStarter starts the informer of a custom resource read through the
// dynamic client until ctx is done; shutdown waits for it to stop.
func (s *Source) dynamicStarter(resource schema.GroupVersionResource, handler cache.ResourceEventHandler) func(ctx context.Context) (cache.InformerSynced, func(), error) {
	return func(ctx context.Context) (cache.InformerSynced, func(), error) {
		factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(s.dynamic, s.resync, s.namespace, nil)
		reg, err := factory.ForResource(resource).Informer().AddEventHandler(handler)
		if err != nil {
			return nil, nil, fmt.Errorf("registering informer handler: %w", err)
		}
		factory.Start(ctx.Done())
		return reg.HasSynced, factory.Shutdown, nil
	}
}

// startOnceServed asks the API server every optionalRetry whether it
// serves r yet, and starts its informer when it does.
func (s *Source) startOnceServed(ctx context.Context, r optionalResource) {
	ticker := time.NewTicker(s.optionalRetry)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if serves(s.client.Discovery(), r.resource) != nil {
			continue
		}
		_, shutdown, err := r.start(ctx)
		if err != nil {
			s.log.Error("not reading "+r.what, "err", err)
			return
		}
		s.log.Info("reading " + r.what + ": the cluster serves them now")
		<-ctx.Done()
		shutdown()
		return
	}
}

// events adapts typed set/delete functions to an informer handler.
func events[T any](set func(T), del func(namespace, name string)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if o, ok := obj.(T); ok {
				set(o)
			}
		},
		UpdateFunc: func(_, obj any) {
			if o, ok := obj.(T); ok {
				set(o)
			}
		},
		DeleteFunc: func(obj any) {
			// obj may be a cache.DeletedFinalStateUnknown; the key is enough.
			key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
			if err != nil {
				return
			}
			if ns, name, err := cache.SplitMetaNamespaceKey(key); err == nil {
				del(ns, name)
			}
		},
	}
}

func (s *Source) setService(svc *corev1.Service) {
	out, err := source.Service(svc)
	if err != nil {
		// The cluster accepted the object; use what is valid of it.
		s.log.Warn("ignoring invalid fields of service", "service", svc.Namespace+"/"+svc.Name, "err", err)
	}
	s.model.SetService(out)
}

func (s *Source) setPod(p *corev1.Pod) { s.model.SetInstance(podInstance(p)) }

func (s *Source) setSlice(es *discoveryv1.EndpointSlice) {
	out, ok := endpointSlice(es)
	if !ok {
		// Not (or no longer) a service's slice; drop anything we had.
		s.model.DeleteEndpointSlice(es.Namespace, es.Name)
		return
	}
	s.model.SetEndpointSlice(out)
}

// serves reports, as an error, why the API server does not serve a
// resource.
func serves(d discovery.DiscoveryInterface, resource schema.GroupVersionResource) error {
	resources, err := d.ServerResourcesForGroupVersion(resource.GroupVersion().String())
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(resources.APIResources, func(r metav1.APIResource) bool { return r.Name == resource.Resource }) {
		return fmt.Errorf("%s has no resource %q", resource.GroupVersion(), resource.Resource)
	}
	return nil
}

// setWorkload writes one instance per address of a Workload, and deletes
// the instances of addresses it no longer has. An invalid Workload (which
// the CRD's schema should have refused) has no instances.
func (s *Source) setWorkload(u *unstructured.Unstructured) {
	var w v1alpha1.Workload
	err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &w)
	var instances []model.Instance
	if err == nil {
		instances, err = source.WorkloadInstances(&w)
	}
	if err != nil {
		s.log.Warn("ignoring invalid workload", "workload", u.GetNamespace()+"/"+u.GetName(), "err", err)
	}
	s.writeWorkload(u.GetNamespace(), u.GetName(), instances)
}

func (s *Source) deleteWorkload(namespace, name string) { s.writeWorkload(namespace, name, nil) }

func (s *Source) writeWorkload(namespace, name string, instances []model.Instance) {
	key := namespace + "/" + name
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range instances {
		s.model.SetInstance(in)
	}
	for i := len(instances); i < s.workloads[key]; i++ {
		s.model.DeleteInstance(namespace, source.WorkloadInstanceName(name, i))
	}
	if len(instances) == 0 {
		delete(s.workloads, key)
	} else {
		s.workloads[key] = len(instances)
	}
}
