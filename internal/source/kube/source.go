// Package kube feeds the model from a Kubernetes cluster through client-go
// informers: Services, EndpointSlices (discovery/v1) and Pods. It only
// reads. ServiceAccounts are not watched: a pod's spec.serviceAccountName is
// all an identity needs.
package kube

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/source"
)

// Source keeps the model in step with a cluster.
type Source struct {
	client    kubernetes.Interface
	model     *model.Writer
	log       *slog.Logger
	resync    time.Duration
	namespace string
	synced    chan struct{}
}

// Option configures a Source.
type Option func(*Source)

// WithResync sets the informers' resync period (default 0: none; the model
// needs no periodic replay).
func WithResync(d time.Duration) Option { return func(s *Source) { s.resync = d } }

// WithNamespace limits the source to one namespace (default: all).
func WithNamespace(ns string) Option { return func(s *Source) { s.namespace = ns } }

// New returns a source that writes to m as source "kube".
func New(client kubernetes.Interface, m *model.Model, log *slog.Logger, opts ...Option) *Source {
	s := &Source{
		client: client,
		model:  m.Writer("kube"),
		log:    log.With("source", "kube"),
		synced: make(chan struct{}),
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
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // ctx is done
	}
	close(s.synced)
	s.log.Info("informers synced")
	<-ctx.Done()
	return nil
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
