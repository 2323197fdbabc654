package kube

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
)

// The Gateway API routes the source reads, standard channel, v1.
var (
	HTTPRoutesResource = schema.GroupVersionResource{Group: gatewayv1.GroupName, Version: "v1", Resource: "httproutes"}
	GRPCRoutesResource = schema.GroupVersionResource{Group: gatewayv1.GroupName, Version: "v1", Resource: "grpcroutes"}
)

// routesHint says in logs what would make the cluster serve routes.
const routesHint = "are the Gateway API CRDs installed? skein install --gateway-api-crds renders them"

// routeResources are HTTPRoutes and GRPCRoutes, each started on its own:
// a cluster with an older Gateway API bundle may serve HTTPRoute v1 but
// GRPCRoute only in an experimental version, which Skein does not read.
func (s *Source) routeResources() []optionalResource {
	return []optionalResource{
		{what: "HTTPRoutes", hint: routesHint, resource: HTTPRoutesResource, start: func(ctx context.Context) (cache.InformerSynced, func(), error) {
			return s.startRouteInformer(ctx, func(f gatewayinformers.SharedInformerFactory) cache.SharedIndexInformer {
				return f.Gateway().V1().HTTPRoutes().Informer()
			}, events(s.model.SetHTTPRoute, s.model.DeleteHTTPRoute))
		}},
		{what: "GRPCRoutes", hint: routesHint, resource: GRPCRoutesResource, start: func(ctx context.Context) (cache.InformerSynced, func(), error) {
			return s.startRouteInformer(ctx, func(f gatewayinformers.SharedInformerFactory) cache.SharedIndexInformer {
				return f.Gateway().V1().GRPCRoutes().Informer()
			}, events(s.model.SetGRPCRoute, s.model.DeleteGRPCRoute))
		}},
	}
}

// startRouteInformer starts one route kind's informer until ctx is done.
// The objects go into the model as read: the policy compiler validates
// them, and keeps serving the last good version of one that goes bad.
func (s *Source) startRouteInformer(ctx context.Context, informer func(gatewayinformers.SharedInformerFactory) cache.SharedIndexInformer, handler cache.ResourceEventHandler) (cache.InformerSynced, func(), error) {
	factory := gatewayinformers.NewSharedInformerFactoryWithOptions(s.gateway, s.resync,
		gatewayinformers.WithNamespace(s.namespace), gatewayinformers.WithTransform(dropManagedFields))
	reg, err := informer(factory).AddEventHandler(handler)
	if err != nil {
		return nil, nil, fmt.Errorf("registering informer handler: %w", err)
	}
	factory.Start(ctx.Done())
	return reg.HasSynced, factory.Shutdown, nil
}

// dropManagedFields keeps the server-side apply bookkeeping, often larger
// than a route's spec, out of the informer's cache and the model.
func dropManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
