package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/internal/controller/authzapi"
	"github.com/skeinmesh/skein/internal/controller/inbound"
	"github.com/skeinmesh/skein/internal/model"
)

// authzController serves the controller's authorization API over a model
// holding web (demo/web-0, port http 8080) behind a Server that lets the
// front service account in, and a Prometheus that reports two inbound
// edges of web: front's and an unmeshed client's.
func authzController(t *testing.T) string {
	t.Helper()
	m := model.New()
	w := m.Writer("test")
	w.SetInstance(model.Instance{Namespace: "demo", Name: "web-0", Workload: "web", Labels: map[string]string{"app": "web"},
		ServiceAccount: "web", Ports: map[string]uint16{"http": 8080}, Meshed: true})
	w.SetInstance(model.Instance{Namespace: "demo", Name: "db-0", Workload: "db", Labels: map[string]string{"app": "db"}, Meshed: true,
		DefaultInboundPolicy: "all-authenticated"})
	w.SetServer(&policyv1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-http"}, Spec: policyv1.ServerSpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Port: intstr.FromString("http")}})
	w.SetAuthorizationPolicy(&policyv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-front"}, Spec: policyv1.AuthorizationPolicySpec{
		TargetRef:                  policyv1.LocalRef{Group: policyv1.Group, Kind: "Server", Name: "web-http"},
		RequiredAuthenticationRefs: []policyv1.NamespacedRef{{Kind: "ServiceAccount", Name: "front"}}}})
	inb, err := inbound.NewServer(inbound.Config{}, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	inb.Start(ctx, m)
	for deadline := time.Now().Add(5 * time.Second); inb.Compiled() == nil || len(inb.Compiled().Inputs.Servers) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the policy was never compiled")
		}
	}
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Allowed HTTP requests (not probes): the only series with samples.
		if q := r.FormValue("query"); !strings.Contains(q, `inbound_http_authz_allow_total{authz_name!="probe"}`) {
			w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
			return
		}
		w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[
			{"metric":{"namespace":"demo","workload":"web","target_addr":"10.0.0.1:8080","client_id":"spiffe://cluster.local/ns/demo/sa/front"},"value":[1,"120"]},
			{"metric":{"namespace":"demo","workload":"web","target_addr":"10.0.0.1:8080","client_id":""},"value":[1,"7"]}]}}`))
	}))
	t.Cleanup(prom.Close)
	client, err := api.NewClient(api.Config{Address: prom.URL})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	authzapi.Register(mux, authzapi.Config{Policy: inb, Prometheus: promv1.NewAPI(client)})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestAuthzListJSON(t *testing.T) {
	apiURL := authzController(t)
	out, err := run(t, "authz", "-n", "demo", "-o", "json", "--api", apiURL)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got authzapi.ListResponse
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("-o json is not a ListResponse: %v\n%s", err, out)
	}
	if len(got.Servers) != 1 {
		t.Fatalf("servers = %+v", got.Servers)
	}
	s := got.Servers[0]
	if s.Name != "web-http" || s.Port != "http" || s.AccessPolicy != "deny" || len(s.Workloads) != 1 || s.Workloads[0] != "web" ||
		len(s.Authorizations) != 1 || s.Authorizations[0].Name != "demo/web-front" || s.Authorizations[0].Identities[0] != "spiffe://cluster.local/ns/demo/sa/front" {
		t.Errorf("server = %+v", s)
	}
	wantDefaults := []inbound.WorkloadDefault{
		{Namespace: "demo", Workload: "db", DefaultPolicy: "all-authenticated", From: "pod annotation"},
		{Namespace: "demo", Workload: "web", DefaultPolicy: "all-unauthenticated", From: "controller"},
	}
	if len(got.Defaults) != 2 || got.Defaults[0] != wantDefaults[0] || got.Defaults[1] != wantDefaults[1] {
		t.Errorf("defaults = %+v, want %+v", got.Defaults, wantDefaults)
	}
	for _, field := range []string{`"servers"`, `"access_policy"`, `"workloads"`, `"authorizations"`, `"identities"`, `"defaults"`, `"default_policy"`, `"from"`} {
		if !strings.Contains(out, field) {
			t.Errorf("-o json lacks documented field %s", field)
		}
	}
	table, err := run(t, "authz", "-n", "demo", "web", "--api", apiURL)
	if err != nil || !strings.Contains(table, "demo/web-http  http  web        deny    demo/web-front  -      mTLS spiffe://cluster.local/ns/demo/sa/front") {
		t.Errorf("table:\n%s\n%v", table, err)
	}
}

func TestAuthzExplainJSON(t *testing.T) {
	apiURL := authzController(t)
	out, err := run(t, "authz", "explain", "-n", "demo", "--from", "spiffe://cluster.local/ns/demo/sa/front", "--to", "web:8080", "-o", "json", "--api", apiURL)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got authzapi.ExplainResponse
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Allowed || got.Server != "demo/web-http" || got.Authorization != "demo/web-front" || got.Pod != "web-0" {
		t.Errorf("explain = %+v", got)
	}
	out, err = run(t, "authz", "explain", "-n", "demo", "--from", "10.1.2.3", "--to", "web:8080", "-o", "json", "--api", apiURL)
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.Allowed || got.Server != "demo/web-http" || got.Default != "deny" {
		t.Errorf("explain of an unmeshed client = %+v, %v", got, err)
	}
}

func TestAuthzSimulate(t *testing.T) {
	apiURL := authzController(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: policy.skein.io/v1alpha1\nkind: NetworkAuthentication\nmetadata: {name: lan, namespace: demo}\nspec: {networks: [{cidr: 10.0.0.0/99}]}\n"), 0o644)
	if out, err := run(t, "authz", "simulate", "-f", bad, "--api", apiURL); err == nil ||
		!strings.Contains(err.Error(), `bad.yaml: document 1 (NetworkAuthentication demo/lan): spec.networks[0].cidr: "10.0.0.0/99" is not a CIDR`) {
		t.Fatalf("simulate of an invalid proposal: %v\n%s", err, out)
	}
	// Proposed: web's Server now wants the "admin" service account only.
	good := filepath.Join(dir, "tighter.yaml")
	os.WriteFile(good, []byte(`apiVersion: policy.skein.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-front, namespace: demo}
spec:
  targetRef: {group: policy.skein.io, kind: Server, name: web-http}
  requiredAuthenticationRefs: [{kind: ServiceAccount, name: admin}]
`), 0o644)
	out, err := run(t, "authz", "simulate", "-f", good, "-o", "json", "--api", apiURL)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got authzapi.SimulateResponse
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.Replayed != 2 || len(got.Edges) != 2 {
		t.Fatalf("simulate = %+v; want both edges of web denied", got)
	}
	front := got.Edges[1]
	if front.ClientID != "spiffe://cluster.local/ns/demo/sa/front" || front.Count != 120 || !front.Live.Allowed || front.Proposed.Allowed {
		t.Errorf("front's edge = %+v; want allowed live, denied proposed", front)
	}
}
