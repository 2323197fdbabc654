package inbound

import (
	"fmt"
	"log/slog"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/internal/model"
)

// BenchmarkCompile5000Pods: 50 namespaces, each with 20 workloads of 5
// pods, a Server and an AuthorizationPolicy per workload and one
// MeshTLSAuthentication: one Update and every pod's port built, as after
// a change with every proxy watching.
func BenchmarkCompile5000Pods(b *testing.B) {
	var in model.InboundInputs
	in.TrustDomain = "cluster.local"
	for n := range 50 {
		ns := fmt.Sprintf("ns-%d", n)
		in.MeshTLSAuthentications = append(in.MeshTLSAuthentications, &policyv1.MeshTLSAuthentication{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "clients"},
			Spec:       policyv1.MeshTLSAuthenticationSpec{IdentityRefs: []policyv1.NamespacedRef{{Kind: "Namespace", Name: ns}}}})
		for w := range 20 {
			app := fmt.Sprintf("app-%d", w)
			for p := range 5 {
				in.Instances = append(in.Instances, model.Instance{Namespace: ns, Name: fmt.Sprintf("%s-%d", app, p), Workload: app,
					Labels: map[string]string{"app": app}, Ports: map[string]uint16{"http": 8080}, Meshed: true})
			}
			in.Servers = append(in.Servers, &policyv1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app},
				Spec: policyv1.ServerSpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}, Port: intstr.FromString("http")}})
			in.AuthorizationPolicies = append(in.AuthorizationPolicies, &policyv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app},
				Spec: policyv1.AuthorizationPolicySpec{TargetRef: policyv1.LocalRef{Group: policyv1.Group, Kind: "Server", Name: app},
					RequiredAuthenticationRefs: []policyv1.NamespacedRef{{Group: policyv1.Group, Kind: policyv1.MeshTLSAuthenticationKind, Name: "clients"}}}})
		}
	}
	c := NewCompiler(Config{}, slog.New(slog.DiscardHandler))
	b.ResetTimer()
	for b.Loop() {
		out := c.Update(in)
		for _, inst := range in.Instances {
			if p, ok := out.Inbound(inst.Namespace, inst.Name, 8080); !ok || len(p.Authorizations) != 1 {
				b.Fatalf("policy of %s/%s = %+v", inst.Namespace, inst.Name, p)
			}
		}
	}
}
