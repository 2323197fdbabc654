package files

import (
	"path/filepath"
	"strings"
	"testing"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/internal/model"
)

const authzManifests = `
apiVersion: v1
kind: Namespace
metadata:
  name: demo
  annotations: {skein.io/default-inbound-policy: all-authenticated}
---
apiVersion: policy.skein.io/v1alpha1
kind: Server
metadata: {name: web-http, namespace: demo}
spec:
  podSelector: {matchLabels: {app: web}}
  port: http
  proxyProtocol: HTTP/1
  rateLimit: {identity: {requestsPerSecond: 10}}
---
apiVersion: policy.skein.io/v1alpha1
kind: MeshTLSAuthentication
metadata: {name: front, namespace: demo}
spec:
  identityRefs: [{kind: ServiceAccount, name: front}]
---
apiVersion: policy.skein.io/v1alpha1
kind: NetworkAuthentication
metadata: {name: lan, namespace: demo}
spec:
  networks: [{cidr: 10.0.0.0/8, except: [10.0.9.0/24]}]
---
apiVersion: policy.skein.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-front, namespace: demo}
spec:
  targetRef: {group: policy.skein.io, kind: Server, name: web-http}
  requiredAuthenticationRefs:
  - {group: policy.skein.io, kind: MeshTLSAuthentication, name: front}
  - {group: policy.skein.io, kind: NetworkAuthentication, name: lan}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-admin, namespace: demo}
spec:
  parentRefs: [{group: policy.skein.io, kind: Server, name: web-http}]
  rules: [{matches: [{path: {type: PathPrefix, value: /admin}}]}]
`

// TestLoadReadsAuthorizationPolicy: the policy kinds, a Namespace's
// default-policy annotation and a Workload's probe and annotation reach
// the snapshot.
func TestLoadReadsAuthorizationPolicy(t *testing.T) {
	dir := t.TempDir()
	workload := strings.Replace(webManifests, "  labels: {app: web}\n", "  labels: {app: web}\n  annotations: {skein.io/default-inbound-policy: audit}\n", 1)
	writeFile(t, dir, "web.yaml", workload)
	writeFile(t, dir, "authz.yaml", authzManifests)
	snap, _, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Servers) != 1 || len(snap.AuthorizationPolicies) != 1 || len(snap.MeshTLSAuthentications) != 1 || len(snap.NetworkAuthentications) != 1 {
		t.Fatalf("snapshot policy objects: %d %d %d %d", len(snap.Servers), len(snap.AuthorizationPolicies), len(snap.MeshTLSAuthentications), len(snap.NetworkAuthentications))
	}
	if a := snap.Namespaces[0].Annotations[policyv1.DefaultPolicyAnnotation]; a != "all-authenticated" {
		t.Errorf("namespace annotation = %q", a)
	}
	inst := snap.Instances[0]
	if inst.DefaultInboundPolicy != "audit" || len(inst.ProbePaths) != 1 || inst.ProbePaths[0] != (model.ProbePath{Port: 8080, Path: "/ready"}) {
		t.Errorf("instance = %+v", inst)
	}
}

// TestLoadRefusesBadAuthorizationPolicy: each broken object is named with
// its file, object and field.
func TestLoadRefusesBadAuthorizationPolicy(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"bad cidr", "cidr: 10.0.0.0/8", "cidr: 10.0.0.0/88", `(NetworkAuthentication demo/lan): spec.networks[0].cidr: "10.0.0.0/88" is not a CIDR`},
		{"unknown kind in a ref", "kind: NetworkAuthentication, name: lan", "kind: NetAuth, name: lan", `(AuthorizationPolicy demo/web-front): spec.requiredAuthenticationRefs[1].kind: "policy.skein.io/NetAuth" is not a kind`},
		{"missing ref", "kind: MeshTLSAuthentication, name: front}", "kind: MeshTLSAuthentication, name: back}", `(AuthorizationPolicy demo/web-front): spec.requiredAuthenticationRefs[0]: MeshTLSAuthentication demo/back not found`},
		{"empty identities", "identityRefs: [{kind: ServiceAccount, name: front}]", "identities: []", `(MeshTLSAuthentication demo/front): spec.identities: is empty`},
		{"port name", "port: http", "port: grpc", `(Server demo/web-http): spec.port: none of the 2 pods spec.podSelector selects has a port named "grpc"`},
		{"namespace annotation", "default-inbound-policy: all-authenticated", "default-inbound-policy: everyone", `(Namespace demo): metadata.annotations[skein.io/default-inbound-policy]: "everyone" is not a default policy`},
		{"inbound route match", "value: /admin}", "value: admin}", `(HTTPRoute demo/web-admin): spec.rules[0].matches[0].path.value: "admin" does not start with /`},
		{"unknown field", "proxyProtocol: HTTP/1", "protocol: HTTP/1", `(Server demo/web-http): spec.protocol: unknown field`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "web.yaml", webManifests)
			if !strings.Contains(authzManifests, tc.from) {
				t.Fatalf("fixture lacks %q", tc.from)
			}
			writeFile(t, dir, "authz.yaml", strings.Replace(authzManifests, tc.from, tc.to, 1))
			_, _, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "authz.yaml")) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v\nwant an error naming authz.yaml and %s", err, tc.want)
			}
		})
	}
}
