package check_test

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/skeinmesh/skein/internal/install/check"
)

// gatewayCRD is a Gateway API route CRD as a cluster holds it.
func gatewayCRD(plural, bundle string, established bool, servedVersions ...string) *unstructured.Unstructured {
	status := "False"
	if established {
		status = "True"
	}
	var versions []any
	for _, v := range servedVersions {
		versions = append(versions, map[string]any{"name": v, "served": true})
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": plural + ".gateway.networking.k8s.io", "annotations": map[string]any{
			check.BundleVersionAnnotation: bundle, check.ChannelAnnotation: "standard",
		}},
		"spec":   map[string]any{"versions": versions},
		"status": map[string]any{"conditions": []any{map[string]any{"type": "Established", "status": status}}},
	}}
}

func gatewayDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}:           "HTTPRouteList",
		{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "grpcroutes"}:           "GRPCRouteList",
		{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}: "CustomResourceDefinitionList",
	}, objs...)
}

// TestGatewayAPICheck: the Gateway API CRDs' absence, or a kind that does
// not serve v1, is a warning (routes are optional); when both serve, the
// bundle they come from is named.
func TestGatewayAPICheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		crds []runtime.Object
		want string
	}{
		{"absent", nil, "[warn] Gateway API routes (HTTPRoute, GRPCRoute): not installed: the mesh runs without routes"},
		{"serving", []runtime.Object{gatewayCRD("httproutes", "v1.6.3", true, "v1"), gatewayCRD("grpcroutes", "v1.6.3", true, "v1")},
			"[ok] Gateway API routes (HTTPRoute, GRPCRoute): bundle v1.6.3 (standard); HTTPRoute and GRPCRoute serve v1"},
		{"old bundle without GRPCRoute v1", []runtime.Object{gatewayCRD("httproutes", "v1.0.0", true, "v1", "v1beta1"), gatewayCRD("grpcroutes", "v1.0.0", true, "v1alpha2")},
			"[warn] Gateway API routes (HTTPRoute, GRPCRoute): bundle v1.0.0 (standard); GRPCRoute: v1 not served"},
		{"GRPCRoute missing", []runtime.Object{gatewayCRD("httproutes", "v1.6.3", true, "v1")},
			"[warn] Gateway API routes (HTTPRoute, GRPCRoute): bundle v1.6.3 (standard); GRPCRoute CRD not installed"},
		{"not established", []runtime.Object{gatewayCRD("httproutes", "v1.6.3", false, "v1"), gatewayCRD("grpcroutes", "v1.6.3", true, "v1")},
			"HTTPRoute: CRD not established"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &check.Checker{Client: installed(t), Dynamic: gatewayDynamic(tc.crds...), Namespace: "skein", Admin: fakeAdmin{}, GatewayAPIVersion: "v1.6.3"}
			results := c.PostInstall(context.Background())
			out := output(results)
			if !strings.Contains(out, tc.want) {
				t.Errorf("missing %q in\n%s", tc.want, out)
			}
			if check.Failed(results) {
				t.Errorf("the Gateway API check failed the install:\n%s", out)
			}
			if !strings.HasPrefix(tc.want, "[ok]") && !strings.Contains(out, "skein install --gateway-api-crds | kubectl apply -f - (v1.6.3, standard channel)") {
				t.Errorf("no hint naming --gateway-api-crds in\n%s", out)
			}
		})
	}
}
