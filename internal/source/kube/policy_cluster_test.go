package kube_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/config"
	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/source/kube"
	"github.com/skeinmesh/skein/internal/testenv"
	"github.com/skeinmesh/skein/internal/testenv/cluster"
)

// TestPolicyFromTheAPIServer runs the source against a real API server
// started before Skein's CRDs exist: it syncs without them, then reads the
// policy.skein.io objects once the CRDs are applied, with a namespace's
// default-policy annotation; the CRDs' own schema refuses a bad object.
func TestPolicyFromTheAPIServer(t *testing.T) {
	c := cluster.Start(t, testenv.NewNetwork(t))
	ctx := t.Context()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop",
		Annotations: map[string]string{policyv1.DefaultPolicyAnnotation: "all-authenticated"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	m := model.New()
	src := kube.New(c.Client, m, slog.New(slog.DiscardHandler), kube.WithWorkloads(dyn), kube.WithCRDRetry(200*time.Millisecond))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-src.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("the source did not sync without the CRDs")
	}

	crds, err := config.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, c, bytes.Join(crds, []byte("\n---\n")), "apply", "-f", "-")
	kubectl(t, c, nil, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
	kubectl(t, c, []byte(`
apiVersion: policy.skein.io/v1alpha1
kind: Server
metadata: {name: web-http, namespace: shop}
spec: {podSelector: {matchLabels: {app: web}}, port: http, accessPolicy: audit}
---
apiVersion: policy.skein.io/v1alpha1
kind: MeshTLSAuthentication
metadata: {name: front, namespace: shop}
spec: {identityRefs: [{kind: ServiceAccount, name: front}]}
---
apiVersion: policy.skein.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-front, namespace: shop}
spec:
  targetRef: {group: policy.skein.io, kind: Server, name: web-http}
  requiredAuthenticationRefs: [{group: policy.skein.io, kind: MeshTLSAuthentication, name: front}]
`), "apply", "-f", "-")

	deadline := time.Now().Add(30 * time.Second)
	for {
		in := m.InboundInputs()
		if len(in.Servers) == 1 && in.Servers[0].Spec.AccessPolicy == "audit" && len(in.AuthorizationPolicies) == 1 &&
			len(in.MeshTLSAuthentications) == 1 && len(in.Namespaces) > 0 && hasNamespaceDefault(in, "shop", "all-authenticated") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the model never held the policy objects and the namespace annotation: %+v", in)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The CRD's schema is the first line of defence: an unknown access
	// policy never reaches the controller.
	bad := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(`
apiVersion: policy.skein.io/v1alpha1
kind: Server
metadata: {name: bad, namespace: shop}
spec: {podSelector: {}, port: 80, accessPolicy: sometimes}
`), &bad.Object); err != nil {
		t.Fatal(err)
	}
	_, err = dyn.Resource(kube.ServersResource).Namespace("shop").Create(ctx, bad, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "spec.accessPolicy") {
		t.Fatalf("creating a Server with accessPolicy sometimes: %v; want the API server to refuse spec.accessPolicy", err)
	}
}

func hasNamespaceDefault(in model.InboundInputs, name, policy string) bool {
	for _, ns := range in.Namespaces {
		if ns.Name == name && ns.Annotations[policyv1.DefaultPolicyAnnotation] == policy {
			return true
		}
	}
	return false
}

func kubectl(t *testing.T, c *cluster.Cluster, stdin []byte, args ...string) {
	t.Helper()
	cmd := c.Kubectl(t.Context(), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
