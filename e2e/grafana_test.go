package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/config/grafana"
	"github.com/skeinmesh/skein/demo"
)

// grafanaDemoRoutes gives the demo routes, so that the route panels have
// something real to show: emoji's calls are mirrored to emoji-shadow (the
// same replicas), its List calls have a 1 ms request timeout (which the
// mesh's round trip almost always exceeds), and voting's calls that fail
// UNKNOWN (the bot's doughnut vote) are retried once.
const grafanaDemoRoutes = `
---
apiVersion: v1
kind: Service
metadata: {name: emoji-shadow, namespace: demo}
spec:
  selector: {app: emoji}
  ports: [{name: grpc, port: 8080, targetPort: grpc}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: emoji, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: emoji, port: 8080}]
  rules:
  - filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: emoji-shadow, port: 8080}}
    backendRefs: [{name: emoji, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: emoji-list
  namespace: demo
  annotations: {skein.io/timeout-request: 1ms}
spec:
  parentRefs: [{group: "", kind: Service, name: emoji, port: 8080}]
  rules:
  - matches: [{method: {service: skein.demo.v1alpha1.Emoji, method: List}}]
    backendRefs: [{name: emoji, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: voting
  namespace: demo
  annotations: {skein.io/retry-grpc: unknown, skein.io/retry-limit: "1"}
spec:
  parentRefs: [{group: "", kind: Service, name: voting, port: 8080}]
  rules:
  - backendRefs: [{name: voting, port: 8080}]
`

// grafanaWindow stands for $__rate_interval and $__interval: 5 minutes,
// so that what happens only while the mesh starts (proxies asking for
// their certificates) is still in the window when the test looks.
const grafanaWindow = "5m"

// TestGrafanaDashboardsQueryTheDemo runs every query of every shipped
// Grafana dashboard against the real Prometheus of the demo mesh (skein
// up, with routes of its own), with the template variables set to real
// values, and wants each to run and return a number. What the demo's own
// traffic never makes (denials, audit, rate limits, opaque connections,
// failed connections, breaker ejections, refused certificates and
// streams) the test makes with a workload of its own, gate, and traffic
// it drives (grafanaGateManifest, feedGrafanaGate): the workload
// dashboard is read for gate. Each variable's label_values query must
// list the value used.
func TestGrafanaDashboardsQueryTheDemo(t *testing.T) {
	requireRoot(t)
	m := startUpMesh(t, string(demo.Manifests)+grafanaDemoRoutes+grafanaGateManifest)
	feedGrafanaGate(t, m, grafanaGateFeeds)
	prom := &promClient{c: podHTTP(t, m.pod(t, "prometheus")), base: "http://prometheus:9090"}

	dashboards, err := grafana.Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	wantRoutes := append([]string{"demo/emoji", "demo/emoji-list", "demo/voting"}, grafanaGateRoutes...)
	type query struct{ key, expr string }
	var queries []query
	deadline := time.Now().Add(3 * time.Minute)
	for _, d := range dashboards {
		c, err := grafana.Read(d.JSON)
		if err != nil {
			t.Fatalf("%s: %v", d.File, err)
		}
		// The variables, from their own label_values queries, once the
		// values the test wants are there.
		vars := map[string]string{}
		for _, v := range c.Variables {
			if v.Type != "query" {
				continue
			}
			sel, label, err := grafana.LabelValuesQuery(v.Query)
			if err != nil {
				t.Fatalf("%s: variable %s: %v", c.UID, v.Name, err)
			}
			var want []string
			switch v.Name {
			case "namespace":
				want = []string{"demo"}
			case "workload":
				want = []string{"gate"}
			case "route":
				want = wantRoutes
			}
			values := prom.waitLabelValues(t, label, grafana.Expand(sel, vars, grafanaWindow), want, deadline)
			switch v.Name {
			case "namespace", "workload":
				vars[v.Name] = want[0]
			default: // multi: what Grafana sends for All
				vars[v.Name] = "(" + strings.Join(values, "|") + ")"
			}
			t.Logf("%s: $%s = %s (of %v)", c.UID, v.Name, vars[v.Name], values)
		}
		for _, p := range c.Panels {
			for _, tg := range p.Targets {
				key := c.UID + "/" + p.Title + "/" + tg.RefID
				queries = append(queries, query{key, grafana.Expand(tg.Expr, vars, grafanaWindow)})
			}
		}
	}
	// A fourth emoji replica, so that a proxy asks for its certificate
	// while Prometheus watches the controller (the demo's proxies certify
	// once, as the mesh starts, often before the first scrape).
	m.editManifest(t, "replicas: 3", "replicas: 4")

	// Traffic has flowed since the variables were found; poll until every
	// query that should has data.
	pending := map[string]string{}
	for _, q := range queries {
		pending[q.key] = q.expr
	}
	results := map[string]int{}
	for {
		for _, q := range queries {
			expr, ok := pending[q.key]
			if !ok {
				continue
			}
			n, err := prom.query(expr)
			if err != nil {
				t.Fatalf("%s does not run: %v\n%s", q.key, err, expr)
			}
			results[q.key] = n
			if n > 0 {
				delete(pending, q.key)
			}
		}
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Second)
	}
	keys := make([]string, 0, len(pending))
	for k := range pending {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Errorf("%s returned no data from the demo's Prometheus:\n%s", k, pending[k])
	}
	var withData int
	for _, q := range queries {
		if results[q.key] > 0 {
			withData++
		}
	}
	t.Logf("%d queries in %d dashboards ran; %d returned data", len(queries), len(dashboards), withData)
}

// promClient queries the HTTP API of skein up's Prometheus from inside its
// host.
type promClient struct {
	c    *http.Client
	base string
}

// query runs an instant query and returns how many series it answered
// with a number (not NaN, as a ratio of two zero rates or a quantile of no
// samples is, which Grafana draws as nothing).
func (p *promClient) query(expr string) (int, error) {
	var resp struct {
		Status, Error string
		Data          struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(expr), &resp); err != nil {
		return 0, err
	}
	if resp.Status != "success" {
		return 0, fmt.Errorf("%s: %s", resp.Status, resp.Error)
	}
	n := 0
	for _, r := range resp.Data.Result {
		if v, _ := r.Value[1].(string); v != "" && v != "NaN" {
			n++
		}
	}
	return n, nil
}

// waitLabelValues answers label_values(selector, label) as Grafana does
// (the label values API), waiting until every one of want is among them.
func (p *promClient) waitLabelValues(t *testing.T, label, selector string, want []string, deadline time.Time) []string {
	t.Helper()
	path := "/api/v1/label/" + url.PathEscape(label) + "/values"
	if selector != "" {
		path += "?match[]=" + url.QueryEscape(selector)
	}
	for {
		var resp struct {
			Status, Error string
			Data          []string
		}
		err := p.get(path, &resp)
		if err == nil && resp.Status != "success" {
			t.Fatalf("label_values(%s, %s): %s: %s", selector, label, resp.Status, resp.Error)
		}
		missing := slices.ContainsFunc(want, func(w string) bool { return !slices.Contains(resp.Data, w) })
		if err == nil && len(resp.Data) > 0 && !missing {
			return resp.Data
		}
		if time.Now().After(deadline) {
			t.Fatalf("label_values(%s, %s) = %v (%v), want %v among them", selector, label, resp.Data, err, want)
		}
		time.Sleep(2 * time.Second)
	}
}

func (p *promClient) get(path string, into any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", p.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := p.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Prometheus answers 400 with a JSON error for a query that does not
	// parse: decode it either way.
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	return nil
}
