package v1alpha1

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestValidateNamesTheField(t *testing.T) {
	meta := metav1.ObjectMeta{Name: "x", Namespace: "demo"}
	for _, tc := range []struct {
		name string
		obj  interface{ Validate() error }
		want string // "" for valid
	}{
		{"server ok", &Server{ObjectMeta: meta, Spec: ServerSpec{Port: intstr.FromString("http")}}, ""},
		{"server port 0", &Server{ObjectMeta: meta, Spec: ServerSpec{Port: intstr.FromInt32(0)}}, "spec.port: 0 is not a port number"},
		{"server access policy", &Server{ObjectMeta: meta, Spec: ServerSpec{Port: intstr.FromInt32(80), AccessPolicy: "nobody"}}, `spec.accessPolicy: "nobody" is not a default policy`},
		{"server rate override", &Server{ObjectMeta: meta, Spec: ServerSpec{Port: intstr.FromInt32(80), RateLimit: &RateLimit{Overrides: []RateLimitOverride{{RequestsPerSecond: 5, ClientRefs: []NamespacedRef{{Kind: "Pod", Name: "a"}}}}}}},
			`spec.rateLimit.overrides[0].clientRefs[0].kind: "Pod" is not a kind`},
		{"policy ok", &AuthorizationPolicy{ObjectMeta: meta, Spec: AuthorizationPolicySpec{
			TargetRef:                  LocalRef{Group: Group, Kind: "Server", Name: "web"},
			RequiredAuthenticationRefs: []NamespacedRef{{Group: Group, Kind: "MeshTLSAuthentication", Name: "a"}, {Kind: "ServiceAccount", Name: "b"}}}}, ""},
		{"policy unknown kind", &AuthorizationPolicy{ObjectMeta: meta, Spec: AuthorizationPolicySpec{
			TargetRef:                  LocalRef{Group: Group, Kind: "Server", Name: "web"},
			RequiredAuthenticationRefs: []NamespacedRef{{Group: Group, Kind: "Whatever", Name: "a"}}}},
			`spec.requiredAuthenticationRefs[0].kind: "policy.skein.io/Whatever" is not a kind`},
		{"policy target kind", &AuthorizationPolicy{ObjectMeta: meta, Spec: AuthorizationPolicySpec{
			TargetRef:                  LocalRef{Kind: "Service", Name: "web"},
			RequiredAuthenticationRefs: []NamespacedRef{{Kind: "ServiceAccount", Name: "b"}}}},
			`spec.targetRef.kind: "Service" is not a kind`},
		{"policy no authentications", &AuthorizationPolicy{ObjectMeta: meta, Spec: AuthorizationPolicySpec{
			TargetRef: LocalRef{Kind: "Namespace", Name: "demo"}}}, "spec.requiredAuthenticationRefs: is empty"},
		{"meshtls empty", &MeshTLSAuthentication{ObjectMeta: meta}, "spec.identities: is empty"},
		{"meshtls bad identity", &MeshTLSAuthentication{ObjectMeta: meta, Spec: MeshTLSAuthenticationSpec{Identities: []string{"*", "*.demo.serviceaccount", "web"}}},
			`spec.identities[2]: "web" is not a SPIFFE ID`},
		{"meshtls ok", &MeshTLSAuthentication{ObjectMeta: meta, Spec: MeshTLSAuthenticationSpec{IdentityRefs: []NamespacedRef{{Kind: "Namespace", Name: "other"}}}}, ""},
		{"network bad cidr", &NetworkAuthentication{ObjectMeta: meta, Spec: NetworkAuthenticationSpec{Networks: []Network{{Cidr: "10.0.0.0/33"}}}},
			`spec.networks[0].cidr: "10.0.0.0/33" is not a CIDR`},
		{"network except outside", &NetworkAuthentication{ObjectMeta: meta, Spec: NetworkAuthenticationSpec{Networks: []Network{{Cidr: "10.0.0.0/8", Except: []string{"192.168.0.0/16"}}}}},
			`spec.networks[0].except[0]: 192.168.0.0/16 is not inside 10.0.0.0/8`},
		{"network ok", &NetworkAuthentication{ObjectMeta: meta, Spec: NetworkAuthenticationSpec{Networks: []Network{{Cidr: "10.0.0.0/8", Except: []string{"10.1.2.3"}}}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.obj.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
