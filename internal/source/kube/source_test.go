package kube

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skeinmesh/skein/internal/model"
)

func webService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"},
		Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.10",
			Selector:  map[string]string{"app": "web"},
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
}

func pod(name, ip string, meshed bool) *corev1.Pod {
	controller := true
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "demo", Name: name,
			Labels:          map[string]string{"app": "web", "pod-template-hash": "5d9f"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d9f", Controller: &controller}},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "web-sa",
			Containers:         []corev1.Container{{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}},
		},
		Status: corev1.PodStatus{
			PodIP:      ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
	if meshed {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ProxyContainerName})
	}
	return p
}

type sliceEndpoint struct {
	ip, pod string
	ready   *bool
}

func slice(endpoints ...sliceEndpoint) *discoveryv1.EndpointSlice {
	name, port := "http", int32(8080)
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "demo", Name: "web-x1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}
	for _, e := range endpoints {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{e.ip},
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "demo", Name: e.pod},
		})
	}
	return es
}

// start runs a source against a fake cluster holding objs until the test
// ends, and returns the model once the informers have synced.
func start(t *testing.T, objs ...any) (*fake.Clientset, *model.Model) {
	t.Helper()
	client := fake.NewClientset()
	ctx := context.Background()
	for _, o := range objs {
		create(t, client, o)
	}
	m := model.New()
	s := New(client, m, slog.New(slog.DiscardHandler))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Synced():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("informers did not sync")
	}
	return client, m
}

func create(t *testing.T, client *fake.Clientset, obj any) {
	t.Helper()
	ctx := t.Context()
	var err error
	switch o := obj.(type) {
	case *corev1.Service:
		_, err = client.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *corev1.Pod:
		_, err = client.CoreV1().Pods(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *discoveryv1.EndpointSlice:
		_, err = client.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	default:
		t.Fatalf("cannot create %T", obj)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func watch(t *testing.T, m *model.Model, dst string) <-chan model.EndpointSet {
	t.Helper()
	sets := make(chan model.EndpointSet, 16)
	if err := m.Watch(t.Context(), dst, func(s model.EndpointSet) { sets <- s }); err != nil {
		t.Fatal(err)
	}
	return sets
}

// nextMatching waits for a set satisfying ok: informer events arrive in
// several writes, so intermediate sets may come first.
func nextMatching(t *testing.T, sets <-chan model.EndpointSet, what string, ok func(model.EndpointSet) bool) model.EndpointSet {
	t.Helper()
	timeout := time.After(5 * time.Second)
	var last model.EndpointSet
	for {
		select {
		case s := <-sets:
			if ok(s) {
				return s
			}
			last = s
		case <-timeout:
			t.Fatalf("never saw %s; last set %+v", what, last)
		}
	}
}

func addrsAre(want ...string) func(model.EndpointSet) bool {
	return func(s model.EndpointSet) bool {
		got := []string{}
		for _, e := range s.Endpoints {
			got = append(got, e.Addr.String())
		}
		return s.Exists && slices.Equal(got, want)
	}
}

func ready(b bool) *bool { return &b }

func TestEndpointsComeFromSlicesWithPodIdentity(t *testing.T) {
	client, m := start(t,
		webService(),
		pod("web-5d9f-a", "10.0.0.1", true),
		pod("web-5d9f-b", "10.0.0.2", false),
		slice(sliceEndpoint{"10.0.0.1", "web-5d9f-a", nil}, sliceEndpoint{"10.0.0.2", "web-5d9f-b", ready(true)}),
	)
	sets := watch(t, m, "web.demo.svc.cluster.local:80")
	got := nextMatching(t, sets, "both endpoints", addrsAre("10.0.0.1:8080", "10.0.0.2:8080"))
	a, b := got.Endpoints[0], got.Endpoints[1]
	if a.Identity != "spiffe://cluster.local/ns/demo/sa/web-sa" {
		t.Errorf("meshed pod identity = %q", a.Identity)
	}
	if b.Identity != "" {
		t.Errorf("pod without the proxy has identity %q, want none", b.Identity)
	}
	wantLabels := map[string]string{"namespace": "demo", "service": "web", "workload": "web", "pod": "web-5d9f-a"}
	if !maps.Equal(a.Labels, wantLabels) {
		t.Errorf("labels = %v, want %v", a.Labels, wantLabels)
	}
	if got.Service != "demo/web" {
		t.Errorf("service = %q", got.Service)
	}

	// The cluster IP answers the same.
	nextMatching(t, watch(t, m, "10.96.0.10:80"), "the set by cluster IP", addrsAre("10.0.0.1:8080", "10.0.0.2:8080"))

	// scale up, then down, through the slice
	create(t, client, pod("web-5d9f-c", "10.0.0.3", true))
	es := slice(sliceEndpoint{"10.0.0.1", "web-5d9f-a", nil}, sliceEndpoint{"10.0.0.2", "web-5d9f-b", ready(true)}, sliceEndpoint{"10.0.0.3", "web-5d9f-c", ready(true)})
	if _, err := client.DiscoveryV1().EndpointSlices("demo").Update(t.Context(), es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The pod and the slice come through separate informers, in either
	// order: the endpoint gets its identity when both are in.
	nextMatching(t, sets, "scale up with the new pod's identity", func(s model.EndpointSet) bool {
		return addrsAre("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080")(s) &&
			s.Endpoints[2].Identity == "spiffe://cluster.local/ns/demo/sa/web-sa"
	})
	es = slice(sliceEndpoint{"10.0.0.1", "web-5d9f-a", ready(false)}, sliceEndpoint{"10.0.0.3", "web-5d9f-c", ready(true)})
	if _, err := client.DiscoveryV1().EndpointSlices("demo").Update(t.Context(), es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	nextMatching(t, sets, "scale down and a not-ready endpoint", addrsAre("10.0.0.3:8080"))

	// A pod whose service account changes changes its endpoint's identity.
	meshed := pod("web-5d9f-c", "10.0.0.3", true)
	meshed.Spec.ServiceAccountName = "other-sa"
	if _, err := client.CoreV1().Pods("demo").Update(t.Context(), meshed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	nextMatching(t, sets, "the pod's new service account", func(s model.EndpointSet) bool {
		return len(s.Endpoints) == 1 && s.Endpoints[0].Identity == "spiffe://cluster.local/ns/demo/sa/other-sa"
	})

	if err := client.DiscoveryV1().EndpointSlices("demo").Delete(t.Context(), "web-x1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Services("demo").Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	nextMatching(t, sets, "the service gone", func(s model.EndpointSet) bool { return !s.Exists })
}

func TestPodAddressIsItsOwnDestination(t *testing.T) {
	client, m := start(t, pod("web-5d9f-a", "10.0.0.1", true))
	sets := watch(t, m, "10.0.0.1:8080")
	got := nextMatching(t, sets, "the pod", func(s model.EndpointSet) bool { return s.Exists })
	if len(got.Endpoints) != 1 || got.Endpoints[0].Identity != "spiffe://cluster.local/ns/demo/sa/web-sa" {
		t.Fatalf("set = %+v", got)
	}
	if err := client.CoreV1().Pods("demo").Delete(t.Context(), "web-5d9f-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	nextMatching(t, sets, "the pod gone", func(s model.EndpointSet) bool { return !s.Exists })
}

func TestWorkloadName(t *testing.T) {
	controller := true
	tests := []struct {
		name string
		pod  corev1.Pod
		want string
	}{
		{"deployment", *pod("web-5d9f-a", "", false), "web"},
		{"statefulset", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0", OwnerReferences: []metav1.OwnerReference{{Kind: "StatefulSet", Name: "db", Controller: &controller}}}}, "db"},
		{"bare pod with app label", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"app": "tool"}}}, "tool"},
		{"bare pod", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, "x"},
	}
	for _, tt := range tests {
		if got := workloadName(&tt.pod); got != tt.want {
			t.Errorf("%s: workloadName = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestRunStopsWithItsContext(t *testing.T) {
	s := New(fake.NewClientset(), model.New(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Synced()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run() = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func workload(addresses ...any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "skein.io/v1alpha1",
		"kind":       "Workload",
		"metadata":   map[string]any{"namespace": "demo", "name": "web-vm", "labels": map[string]any{"app": "web"}},
		"spec": map[string]any{
			"serviceAccountName": "web-sa",
			"ports":              []any{map[string]any{"name": "http", "containerPort": int64(8080)}},
			"addresses":          addresses,
		},
	}}
}

// startWithWorkloads is start with the Workload resource served (or not)
// and the given Workloads in the cluster.
func startWithWorkloads(t *testing.T, served bool, workloads ...runtime.Object) (dynamic.Interface, *model.Model) {
	var servedNow atomic.Bool
	servedNow.Store(served)
	return startWithWorkloadsServed(t, &servedNow, workloads...)
}

// startWithWorkloadsServed is startWithWorkloads where served says, at
// each discovery request, whether the Workload resource is served.
func startWithWorkloadsServed(t *testing.T, served *atomic.Bool, workloads ...runtime.Object) (dynamic.Interface, *model.Model) {
	t.Helper()
	client := fake.NewClientset()
	client.Resources = []*metav1.APIResourceList{{
		GroupVersion: WorkloadsResource.GroupVersion().String(),
		APIResources: []metav1.APIResource{{Name: "workloads", Namespaced: true, Kind: "Workload"}},
	}}
	client.Discovery().(*fakediscovery.FakeDiscovery).PrependReactor("get", "resource", func(k8stesting.Action) (bool, runtime.Object, error) {
		if served.Load() {
			return false, nil, nil
		}
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: WorkloadsResource.Group}, WorkloadsResource.Resource)
	})
	for _, o := range []any{webService(), pod("web-5d9f-a", "10.0.0.1", true), slice(sliceEndpoint{"10.0.0.1", "web-5d9f-a", nil})} {
		create(t, client, o)
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{WorkloadsResource: "WorkloadList"}, workloads...)
	m := model.New()
	s := New(client, m, slog.New(slog.DiscardHandler), WithWorkloads(dyn))
	s.optionalRetry = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("informers did not sync")
	}
	return dyn, m
}

// TestWorkloadAddressesJoinTheService: a VM's Workload adds its addresses
// to the services that select it, next to the pods from the slices, and
// takes them away again when it shrinks or goes.
func TestWorkloadAddressesJoinTheService(t *testing.T) {
	dyn, m := startWithWorkloads(t, true, workload("192.168.7.1", "192.168.7.2"))
	sets := watch(t, m, "web.demo.svc.cluster.local:80")
	got := nextMatching(t, sets, "the pod and both VM addresses", addrsAre("10.0.0.1:8080", "192.168.7.1:8080", "192.168.7.2:8080"))
	if id := got.Endpoints[1].Identity; id != "spiffe://cluster.local/ns/demo/sa/web-sa" {
		t.Errorf("the VM's identity = %q", id)
	}
	workloads := dyn.Resource(WorkloadsResource).Namespace("demo")
	if _, err := workloads.Update(t.Context(), workload("192.168.7.2"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	nextMatching(t, sets, "one VM address", addrsAre("10.0.0.1:8080", "192.168.7.2:8080"))
	if err := workloads.Delete(t.Context(), "web-vm", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	nextMatching(t, sets, "the pod alone", addrsAre("10.0.0.1:8080"))
}

// TestWorkloadsNotServed: without the CRDs the source still syncs, with the
// pods only.
func TestWorkloadsNotServed(t *testing.T) {
	_, m := startWithWorkloads(t, false, workload("192.168.7.1"))
	nextMatching(t, watch(t, m, "web.demo.svc.cluster.local:80"), "the pod alone", addrsAre("10.0.0.1:8080"))
}

// TestWorkloadsServedLater: CRDs installed after the controller started
// are noticed without a restart.
func TestWorkloadsServedLater(t *testing.T) {
	var served atomic.Bool
	_, m := startWithWorkloadsServed(t, &served, workload("192.168.7.1"))
	sets := watch(t, m, "web.demo.svc.cluster.local:80")
	nextMatching(t, sets, "the pod alone", addrsAre("10.0.0.1:8080"))
	served.Store(true)
	nextMatching(t, sets, "the pod and the VM", addrsAre("10.0.0.1:8080", "192.168.7.1:8080"))
}
