package check

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The Gateway API CRDs' annotations that say which bundle they come from.
const (
	BundleVersionAnnotation = "gateway.networking.k8s.io/bundle-version"
	ChannelAnnotation       = "gateway.networking.k8s.io/channel"
)

// GatewayAPIName is the name of the Gateway API check.
const GatewayAPIName = "Gateway API routes (HTTPRoute, GRPCRoute)"

// routeKinds are the Gateway API kinds the controller reads, version v1.
var routeKinds = []struct{ kind, crd, resource string }{
	{"HTTPRoute", "httproutes.gateway.networking.k8s.io", "httproutes"},
	{"GRPCRoute", "grpcroutes.gateway.networking.k8s.io", "grpcroutes"},
}

// checkGatewayAPI says whether the cluster has the Gateway API CRDs for
// HTTPRoute and GRPCRoute, from which bundle (version, channel), and
// whether both serve v1 (a list call succeeds). Routes are optional: the
// controller runs without them, so nothing here fails, it warns.
func (c *Checker) checkGatewayAPI(ctx context.Context) Result {
	var found, missing, problems, bundles []string
	for _, k := range routeKinds {
		callCtx, cancel := context.WithTimeout(ctx, timeout)
		crd, err := c.Dynamic.Resource(crdResource).Get(callCtx, k.crd, metav1.GetOptions{})
		cancel()
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, k.kind)
			continue
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: reading CRD %s: %v", k.kind, k.crd, err))
			continue
		}
		found = append(found, k.kind)
		bundle := bundleOf(crd)
		if !slices.Contains(bundles, bundle) {
			bundles = append(bundles, bundle)
		}
		if problem := c.routeKindServes(ctx, crd, k.resource); problem != "" {
			problems = append(problems, k.kind+": "+problem)
		}
	}
	hint := "Skein reads routes from the Gateway API CRDs the cluster has; to add them: skein install --gateway-api-crds | kubectl apply -f -"
	if c.GatewayAPIVersion != "" {
		hint += " (" + c.GatewayAPIVersion + ", standard channel)"
	}
	switch {
	case len(found) == 0 && len(problems) == 0:
		return warned(GatewayAPIName, hint, "not installed: the mesh runs without routes (no splits, per-route timeouts, retries, mirrors)")
	case len(missing) > 0:
		problems = append(problems, strings.Join(missing, " and ")+" CRD not installed")
	}
	detail := fmt.Sprintf("bundle %s", strings.Join(bundles, ", "))
	if len(problems) > 0 {
		return warned(GatewayAPIName, hint, "%s; %s", detail, strings.Join(problems, "; "))
	}
	return Result{Name: GatewayAPIName, Status: OK, Detail: detail + "; HTTPRoute and GRPCRoute serve v1"}
}

// bundleOf says which Gateway API bundle a CRD comes from: "v1.6.3
// (standard)", or what is missing.
func bundleOf(crd *unstructured.Unstructured) string {
	version := crd.GetAnnotations()[BundleVersionAnnotation]
	if version == "" {
		version = "of unknown version"
	}
	channel := crd.GetAnnotations()[ChannelAnnotation]
	if channel == "" {
		channel = "unknown channel"
	}
	return version + " (" + channel + ")"
}

// routeKindServes returns what keeps a route kind from serving v1, "" when
// nothing does: the CRD established with v1 served, and a list answered.
func (c *Checker) routeKindServes(ctx context.Context, crd *unstructured.Unstructured, resource string) string {
	if !conditionTrue(crd, "Established") {
		return "CRD not established"
	}
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	if !slices.ContainsFunc(versions, func(v any) bool {
		m, _ := v.(map[string]any)
		return m["name"] == "v1" && m["served"] == true
	}) {
		return "v1 not served (Skein reads v1; upgrade the Gateway API CRDs)"
	}
	gvr := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: resource}
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := c.Dynamic.Resource(gvr).List(callCtx, metav1.ListOptions{Limit: 1}); err != nil {
		return "listing: " + err.Error()
	}
	return ""
}
