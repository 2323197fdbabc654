package kube

import (
	"context"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/internal/model"
)

func toUnstructured(t *testing.T, obj any, kind string) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(policyv1.GroupVersion.String())
	u.SetKind(kind)
	return u
}

// TestPolicyKindsNamespacesAndPodAnnotations: the policy.skein.io objects,
// a namespace's default-policy annotation and a pod's annotation and probes
// reach the model's inbound inputs, and a deleted Server leaves. (Routes,
// read with the Gateway API's own client, are routes_test.go's.)
func TestPolicyKindsNamespacesAndPodAnnotations(t *testing.T) {
	client := fake.NewClientset()
	gv := policyv1.GroupVersion.String()
	client.Resources = []*metav1.APIResourceList{{GroupVersion: gv, APIResources: []metav1.APIResource{
		{Name: policyv1.ServerResource, Namespaced: true, Kind: policyv1.ServerKind},
		{Name: policyv1.AuthorizationPolicyResource, Namespaced: true, Kind: policyv1.AuthorizationPolicyKind},
		{Name: policyv1.MeshTLSAuthenticationResource, Namespaced: true, Kind: policyv1.MeshTLSAuthenticationKind},
		{Name: policyv1.NetworkAuthenticationResource, Namespaced: true, Kind: policyv1.NetworkAuthenticationKind},
	}}}
	p := pod("web-5d9f-a", "10.0.0.1", true)
	p.Annotations = map[string]string{policyv1.DefaultPolicyAnnotation: "deny"}
	p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}}
	create(t, client, p)
	if _, err := client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo",
		Annotations: map[string]string{policyv1.DefaultPolicyAnnotation: "audit", "other.io/x": "y"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srv := &policyv1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-http"}, Spec: policyv1.ServerSpec{Port: intstr.FromString("http")}}
	net := &policyv1.NetworkAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "lan"}, Spec: policyv1.NetworkAuthenticationSpec{Networks: []policyv1.Network{{Cidr: "10.0.0.0/8"}}}}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		WorkloadsResource: "WorkloadList", ServersResource: "ServerList", AuthorizationPoliciesResource: "AuthorizationPolicyList",
		MeshTLSAuthenticationsResource: "MeshTLSAuthenticationList", NetworkAuthenticationsResource: "NetworkAuthenticationList",
	}, toUnstructured(t, srv, policyv1.ServerKind), toUnstructured(t, net, policyv1.NetworkAuthenticationKind))

	m := model.New()
	s := New(client, m, slog.New(slog.DiscardHandler), WithWorkloads(dyn))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	inputs := make(chan model.InboundInputs, 64)
	m.WatchInboundInputs(ctx, func(in model.InboundInputs) { inputs <- in })
	until := func(what string, ok func(model.InboundInputs) bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case in := <-inputs:
				if ok(in) {
					return
				}
			case <-deadline:
				t.Fatalf("the model never had %s", what)
			}
		}
	}
	until("the Server, the NetworkAuthentication, the namespace and the pod's annotation and probe", func(in model.InboundInputs) bool {
		return len(in.Servers) == 1 && len(in.NetworkAuthentications) == 1 && in.NetworkAuthentications[0].Spec.Networks[0].Cidr == "10.0.0.0/8" &&
			len(in.Namespaces) == 1 && in.Namespaces[0].Annotations[policyv1.DefaultPolicyAnnotation] == "audit" && len(in.Namespaces[0].Annotations) == 1 &&
			len(in.Instances) == 1 && in.Instances[0].DefaultInboundPolicy == "deny" &&
			len(in.Instances[0].ProbePaths) == 1 && in.Instances[0].ProbePaths[0] == (model.ProbePath{Port: 8080, Path: "/ready"})
	})
	if err := dyn.Resource(ServersResource).Namespace("demo").Delete(t.Context(), "web-http", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	until("the Server gone", func(in model.InboundInputs) bool { return len(in.Servers) == 0 })
}
