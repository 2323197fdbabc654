package model

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
)

// TestInboundInputsFollowPolicyObjects: Servers, namespaces and instances
// wake the inbound watchers; an object said again does not; Replace drops
// what the source no longer has.
func TestInboundInputsFollowPolicyObjects(t *testing.T) {
	m := New()
	w := m.Writer("test")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan InboundInputs, 16)
	m.WatchInboundInputs(ctx, func(in InboundInputs) { got <- in })
	next := func() InboundInputs {
		t.Helper()
		select {
		case in := <-got:
			return in
		case <-time.After(5 * time.Second):
			t.Fatal("no inbound inputs received")
			return InboundInputs{}
		}
	}
	if first := next(); len(first.Servers) != 0 || first.TrustDomain != "cluster.local" {
		t.Fatalf("first inputs = %+v", first)
	}
	srv := &policyv1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"}, Spec: policyv1.ServerSpec{Port: intstr.FromInt32(8080)}}
	w.SetServer(srv)
	if in := next(); len(in.Servers) != 1 || in.Servers[0] != srv {
		t.Fatalf("after SetServer: %+v", in.Servers)
	}
	again := srv.DeepCopy()
	again.ResourceVersion = "7"
	w.SetServer(again)
	select {
	case in := <-got:
		t.Fatalf("a Server said again woke the watchers (version %d)", in.Version)
	case <-time.After(50 * time.Millisecond):
	}
	w.SetNamespace(Namespace{Name: "demo", Annotations: map[string]string{policyv1.DefaultPolicyAnnotation: "deny"}})
	if in := next(); len(in.Namespaces) != 1 || in.Namespaces[0].Annotations[policyv1.DefaultPolicyAnnotation] != "deny" {
		t.Fatalf("after SetNamespace: %+v", in.Namespaces)
	}
	w.SetInstance(Instance{Namespace: "demo", Name: "web-0", DefaultInboundPolicy: "audit", ProbePaths: []ProbePath{{Port: 8080, Path: "/ready"}}})
	if in := next(); len(in.Instances) != 1 || in.Instances[0].DefaultInboundPolicy != "audit" || in.Instances[0].ProbePaths[0].Path != "/ready" {
		t.Fatalf("after SetInstance: %+v", in.Instances)
	}
	w.Replace(Snapshot{NetworkAuthentications: []*policyv1.NetworkAuthentication{{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "lan"}}}})
	in := next()
	if len(in.Servers) != 0 || len(in.Namespaces) != 0 || len(in.Instances) != 0 || len(in.NetworkAuthentications) != 1 {
		t.Fatalf("after Replace: %+v", in)
	}
}
