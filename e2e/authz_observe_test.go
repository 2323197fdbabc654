package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// guardManifest: namespace guard denies by default. api has no Server
// (the namespace default decides); store's port is owned by a Server
// (deny) that the MeshTLSAuthentication callers (a and b) may call. Both
// have an HTTP readiness probe on /id. a and b are meshed clients, plain
// is not.
var guardManifest = `apiVersion: v1
kind: Namespace
metadata: {name: guard, annotations: {skein.io/default-inbound-policy: deny}}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: guard}
spec: {selector: {app: api}, ports: [{name: http, port: 8080, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: store, namespace: guard}
spec: {selector: {app: store}, ports: [{name: http, port: 8080, targetPort: 8080}]}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: api, namespace: guard, labels: {app: api}}
spec:
  serviceAccountName: api
  command: [testapp, -http, ":8080", -id, api]
  ports: [{name: http, containerPort: 8080}]
  readinessProbe: {httpGet: {path: /id, port: http}}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: store, namespace: guard, labels: {app: store}}
spec:
  serviceAccountName: store
  command: [testapp, -http, ":8080", -id, store]
  ports: [{name: http, containerPort: 8080}]
  readinessProbe: {httpGet: {path: /id, port: http}}
---
apiVersion: policy.skein.io/v1alpha1
kind: Server
metadata: {name: store-http, namespace: guard}
spec: {podSelector: {matchLabels: {app: store}}, port: http, accessPolicy: deny}
---
apiVersion: policy.skein.io/v1alpha1
kind: MeshTLSAuthentication
metadata: {name: callers, namespace: guard}
spec: {identityRefs: [{kind: ServiceAccount, name: a}, {kind: ServiceAccount, name: b}]}
---
apiVersion: policy.skein.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: store-callers, namespace: guard}
spec:
  targetRef: {group: policy.skein.io, kind: Server, name: store-http}
  requiredAuthenticationRefs: [{group: policy.skein.io, kind: MeshTLSAuthentication, name: callers}]
---
` + guardClient("a", true) + guardClient("b", true) + guardClient("plain", false)

func guardClient(name string, meshed bool) string {
	return fmt.Sprintf(`apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: %[1]s, namespace: guard, labels: {app: %[1]s}}
spec: {serviceAccountName: %[1]s, inject: %[2]v, command: [testapp]}
---
`, name, meshed)
}

// guardProposal tightens callers to a alone: b's calls to store would be
// denied.
const guardProposal = `apiVersion: policy.skein.io/v1alpha1
kind: MeshTLSAuthentication
metadata: {name: callers, namespace: guard}
spec: {identityRefs: [{kind: ServiceAccount, name: a}]}
`

// promSample is one sample of a Prometheus instant query.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// promQuery asks skein up's own Prometheus (in its host "prometheus").
func (m *upMesh) promQuery(t *testing.T, query string) []promSample {
	t.Helper()
	h := m.pod(t, "prometheus")
	c := podHTTP(t, h)
	code, body, err := getBody(c, "http://"+hostIP(t, h)+":9090/api/v1/query?query="+url.QueryEscape(query))
	if err != nil || code != 200 {
		t.Fatalf("Prometheus query %s: %d %v\n%s", query, code, err, body)
	}
	var resp struct {
		Data struct {
			Result []promSample `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatalf("Prometheus answer to %s: %v\n%s", query, err, body)
	}
	return resp.Data.Result
}

// TestProbesPrometheusAndSimulateUnderDenyInSkeinUp: under a deny
// default (and a deny Server), skein up's readiness probes (sent from the
// hub, as a kubelet's come from the node, through the inbound proxy) keep
// the workloads ready while the same port denies other unauthenticated
// requests; skein up's Prometheus keeps scraping the proxies; and `skein
// authz simulate` of a tighter policy, replaying the real traffic stored
// in that Prometheus, lists exactly the edges it would deny.
func TestProbesPrometheusAndSimulateUnderDenyInSkeinUp(t *testing.T) {
	requireRoot(t)
	m := startUpMesh(t, guardManifest)
	clients := map[string]*http.Client{}
	for _, name := range []string{"a", "b", "plain"} {
		clients[name] = podHTTP(t, m.pod(t, "guard-"+name+"-0"))
	}
	get := func(client, service, path string) int {
		code, _, err := getBody(clients[client], "http://"+service+".guard.svc.cluster.local:8080"+path)
		if err != nil {
			return 0
		}
		return code
	}

	t.Run("probes keep deny workloads ready; other requests on the port are denied", func(t *testing.T) {
		// The Services have their replica only while it is ready: the
		// probe path answers through them. Any other path is denied to
		// the unmeshed client.
		for _, svc := range []string{"api", "store"} {
			if !waitFor(60*time.Second, func() bool { return get("plain", svc, "/id") == 200 }) {
				t.Fatalf("%s never became ready under deny: GET /id from an unmeshed client gave %d", svc, get("plain", svc, "/id"))
			}
			if code := get("plain", svc, "/whoami"); code != 403 {
				t.Errorf("%s: GET /whoami from an unmeshed client: %d, want 403", svc, code)
			}
		}
		// Ready and staying so, over several probe periods.
		for range 10 {
			time.Sleep(500 * time.Millisecond)
			for _, svc := range []string{"api", "store"} {
				if code := get("plain", svc, "/id"); code != 200 {
					t.Errorf("%s: GET /id gave %d: the replica left its Service", svc, code)
				}
			}
		}
		if m.logsMention(t, "readiness changed", "ready=false") {
			t.Errorf("skein up logged a replica going unready")
		}
		// The probes went through the proxies: each counted them as
		// allowed kubelet probes.
		for _, w := range []string{"api", "store"} {
			if got := scrape(t, m.pod(t, "guard-"+w+"-0")).sum("inbound_http_authz_allow_total", map[string]string{"authz_name": "probe"}); got == 0 {
				t.Errorf("%s's proxy counted no request allowed as a probe: the readiness probes did not pass through it", w)
			}
		}
	})

	// Traffic for the edges: a and b call store (allowed), plain calls
	// api's /whoami (denied), until the test ends.
	ctx, stop := context.WithCancel(context.Background())
	var traffic sync.WaitGroup
	traffic.Go(func() {
		for ctx.Err() == nil {
			get("a", "store", "/whoami")
			get("b", "store", "/whoami")
			get("plain", "api", "/whoami")
			time.Sleep(200 * time.Millisecond)
		}
	})
	t.Cleanup(func() { stop(); traffic.Wait() })

	t.Run("Prometheus keeps scraping the proxies of deny workloads", func(t *testing.T) {
		for _, w := range []string{"api", "store"} {
			target := hostIP(t, m.pod(t, "guard-"+w+"-0")) + ":4191"
			var up, series []promSample
			if !waitFor(60*time.Second, func() bool {
				up = m.promQuery(t, fmt.Sprintf(`up{instance=%q} == 1`, target))
				series = m.promQuery(t, fmt.Sprintf(`request_total{direction="inbound",namespace="guard",workload=%q}`, w))
				if len(up) == 1 && len(series) > 0 {
					return true
				}
				time.Sleep(time.Second)
				return false
			}) {
				t.Errorf("%s: Prometheus has up==1 for %s: %v, and %d inbound request_total series", w, target, up, len(series))
			}
		}
	})

	t.Run("simulate lists exactly the edges a tighter policy would deny", func(t *testing.T) {
		// Prometheus has the decisions simulate replays, each series with
		// two samples at least (increase() needs them): both callers'
		// allowed calls to store and the unmeshed client's denied calls
		// to api. Waiting on request_total alone was not enough: under
		// CI's load the deny series was one scrape behind.
		edgesIn := func(query string) []string {
			var seen []string
			for _, s := range m.promQuery(t, query) {
				seen = append(seen, s.Metric["workload"]+" <- "+s.Metric["client_id"])
			}
			return seen
		}
		var seen []string
		if !waitFor(60*time.Second, func() bool {
			seen = append(edgesIn(`sum by (workload, client_id) (increase(inbound_http_authz_allow_total{namespace="guard",authz_name!="probe"}[10m])) > 0`),
				edgesIn(`sum by (workload, client_id) (increase(inbound_http_authz_deny_total{namespace="guard"}[10m])) > 0`)...)
			if slices.Contains(seen, "store <- spiffe://cluster.local/ns/guard/sa/a") && slices.Contains(seen, "store <- spiffe://cluster.local/ns/guard/sa/b") &&
				slices.Contains(seen, "api <- ") {
				return true
			}
			time.Sleep(time.Second)
			return false
		}) {
			t.Fatalf("Prometheus never had a's and b's allowed calls to store and the unmeshed client's denied calls to api; it has %q", seen)
		}
		proposal := filepath.Join(t.TempDir(), "tighter.yaml")
		if err := os.WriteFile(proposal, []byte(guardProposal), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := skein(context.Background(), "authz", "simulate", "-f", proposal, "-o", "json", "--api", m.api())
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Edges []struct {
				Namespace, Workload string
				Port                uint16
				ClientID            string `json:"client_id"`
				Kind                string
				Count               float64
				Live                struct{ Allowed bool }
				Proposed            struct {
					Allowed bool
					Server  string
					Reason  string
				}
			}
			Replayed int
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		// Denied: b's calls to store (allowed now), and plain's calls to
		// api (denied now too). Not a's, and not the probes (unmeshed,
		// to both): they stay allowed.
		type edge struct {
			workload, client string
			live             bool
		}
		var edges []edge
		for _, e := range got.Edges {
			if e.Namespace != "guard" || e.Port != 8080 || e.Kind != "http" || e.Proposed.Allowed || e.Count <= 0 {
				t.Errorf("edge %+v: want guard, port 8080, http, proposed deny, a count", e)
			}
			if e.Workload == "store" && (e.Proposed.Server != "guard/store-http" || !strings.Contains(e.Proposed.Reason, "no authorization matched")) {
				t.Errorf("store edge %+v: want the proposed decision to name Server guard/store-http and that no authorization matched", e)
			}
			edges = append(edges, edge{e.Workload, e.ClientID, e.Live.Allowed})
		}
		want := []edge{{"api", "", false}, {"store", "spiffe://cluster.local/ns/guard/sa/b", true}}
		if !slices.Equal(edges, want) {
			t.Errorf("simulate denied edges %+v, want %+v\n%s", edges, want, out)
		}
		if got.Replayed < len(want)+1 {
			t.Errorf("simulate replayed %d edges, want at least a's as well", got.Replayed)
		}

		table, err := skein(context.Background(), "authz", "simulate", "-f", proposal, "--api", m.api())
		if err != nil {
			t.Fatal(err)
		}
		var rows []string
		for _, l := range strings.Split(table, "\n") {
			if strings.HasPrefix(l, "guard/") {
				rows = append(rows, strings.Join(strings.Fields(l)[:4], " "))
			}
		}
		wantRows := []string{"guard/api 8080 http (unmeshed)", "guard/store 8080 http spiffe://cluster.local/ns/guard/sa/b"}
		if !slices.Equal(rows, wantRows) || !strings.Contains(table, fmt.Sprintf("2 of %d edges", got.Replayed)) {
			t.Errorf("simulate table rows %q, want %q:\n%s", rows, wantRows, table)
		}
	})
}
