package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// mirrorWorkload is a Service and a one-replica Workload running testapp
// with args in namespace mirror.
func mirrorWorkload(name string, args ...string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: mirror}
spec:
  selector: {app: %[1]s}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: %[1]s, namespace: mirror, labels: {app: %[1]s}}
spec:
  serviceAccountName: %[1]s
  command: [testapp, -http, ":8080", %[2]s]
  ports: [{name: http, containerPort: 8080}]
  readinessProbe: {tcpSocket: {port: 8080}}
---
`, name, strings.Join(args, ", "))
}

// mirrorRule is a rule for requests with x-mirror: value, mirrored to
// backend (none: not mirrored).
func mirrorRule(value, backend string) string {
	filter := ""
	if backend != "" {
		filter = fmt.Sprintf(`
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: %s, port: 8080}, percent: 100}`, backend)
	}
	return fmt.Sprintf(`
  - matches: [{headers: [{name: x-mirror, value: %s}]}]%s
    backendRefs: [{name: web, port: 8080}]`, value, filter)
}

// mirrorManifest: web (20 ms per answer, so that latency is steady enough
// to compare) mirrored, by the request's x-mirror header, to nothing, to a
// replica 500 ms slower, to a service with no replica, or to one whose
// answer differs every 10th time.
var mirrorManifest = mirrorWorkload("web", `-http-delay, 20ms`, `-id, app`) +
	mirrorWorkload("shadow-slow", `-http-delay, 520ms`, `-id, app`, `-log-input`) +
	mirrorWorkload("shadow-odd", `-http-delay, 20ms`, `-id, app`, `-odd-every, "10"`, `-log-input`) + `apiVersion: v1
kind: Service
metadata: {name: shadow-down, namespace: mirror}
spec:
  selector: {app: shadow-down}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-mirror, namespace: mirror}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 8080}]
  rules:` + mirrorRule("none", "") + mirrorRule("slow", "shadow-slow") + mirrorRule("down", "shadow-down") + mirrorRule("odd", "shadow-odd") + `
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: client, namespace: mirror, labels: {app: client}}
spec:
  serviceAccountName: client
  command: [testapp]
`

// p50 sends n sequential GETs marked x-mirror: mode and returns their
// median latency; any failure fails the test.
func p50(t *testing.T, c *http.Client, mode string, n int) time.Duration {
	t.Helper()
	took := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		code, body, err := getBody(c, "http://web.mirror.svc.cluster.local:8080/id", "x-mirror", mode)
		if err != nil || code != 200 || body != "app" {
			t.Fatalf("x-mirror %s: got %d %q %v, want 200 app", mode, code, body, err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	return took[n/2]
}

func TestMirroringInSkeinUp(t *testing.T) {
	requireRoot(t)
	m := startUpMesh(t, mirrorManifest)
	c := podHTTP(t, m.pod(t, "mirror-client-0"))
	// The route is in force once the slow shadow sees a mirrored request,
	// and web serves once it answers: a mirror is sent whether or not the
	// primary has endpoints yet (CI: the shadow got one while web's
	// replica was not known, and the next request got 503).
	if !waitFor(60*time.Second, func() bool {
		code, body, _ := getBody(c, "http://web.mirror.svc.cluster.local:8080/id", "x-mirror", "slow")
		return code == 200 && body == "app" && len(m.logLines(t, "shadow-slow-0", "request /id")) > 0
	}) {
		t.Fatal("web never answered a request the slow shadow got a mirror of")
	}
	p50(t, c, "none", 50) // warm
	base := p50(t, c, "none", 300)
	for _, mode := range []string{"slow", "down"} {
		got := p50(t, c, mode, 300)
		t.Logf("p50 without a mirror %v, mirrored to the %s shadow %v", base, mode, got)
		if d := float64(got-base) / float64(base); d > 0.1 || d < -0.1 {
			t.Errorf("mirroring to the %s shadow moved the client's p50 from %v to %v (more than ±10%%)", mode, base, got)
		}
	}

	before := len(m.logLines(t, "shadow-odd-0", "request /id"))
	for range 300 {
		code, _, err := getBody(c, "http://web.mirror.svc.cluster.local:8080/id", "x-mirror", "odd", "authorization", "Bearer s3cret-token")
		if err != nil || code != 200 {
			t.Fatalf("x-mirror odd: %d %v", code, err)
		}
	}
	mirrored := len(m.logLines(t, "shadow-odd-0", "request /id")) - before
	if mirrored < 290 {
		t.Errorf("the odd shadow got %d of 300 mirrored requests", mirrored)
	}
	// ~10% mismatches: the shadow answers "odd" every 10th time; the other
	// shadows answer as the primary does (or not at all).
	client := m.pod(t, "mirror-client-0")
	var mismatch float64
	waitFor(10*time.Second, func() bool {
		mismatch = scrape(t, client).sum("mirror_total", map[string]string{"result": "mismatch"})
		return mismatch >= 25
	})
	t.Logf("%v mismatches for %d requests mirrored to the odd shadow", mismatch, mirrored)
	if share := mismatch / float64(mirrored); share < 0.07 || share > 0.13 {
		t.Errorf("mismatch share %.1f%% (%v of %d), want about 10%%", 100*share, mismatch, mirrored)
	}

	// skein diff shows the share and an example, its Authorization
	// redacted (Prometheus scrapes every 5 s: wait for it). The window
	// holds the whole test, so that a slow machine's waits do not slide
	// the odd shadow's requests out of it; the counts are all there
	// because the proxy's mirror series exist, at 0, from the policy's
	// arrival on, not from the first mirrored request.
	var diff struct {
		Rows []struct {
			Route        string   `json:"route"`
			Backend      string   `json:"backend"`
			Match        int      `json:"match"`
			Mismatch     int      `json:"mismatch"`
			MismatchRate *float64 `json:"mismatch_rate"`
			Examples     []struct {
				Path        string `json:"path"`
				BodyDiffers bool   `json:"body_differs"`
				PrimaryBody string `json:"primary_body"`
				MirrorBody  string `json:"mirror_body"`
			} `json:"examples"`
		} `json:"rows"`
	}
	var out string
	ok := waitFor(60*time.Second, func() bool {
		var err error
		out, err = skein(context.Background(), "diff", "route", "web-mirror", "-n", "mirror", "--since", "10m", "--api", m.api(), "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &diff) != nil {
			return false
		}
		for _, r := range diff.Rows {
			if strings.HasPrefix(r.Backend, "shadow-odd.") && r.Match+r.Mismatch >= 290 && len(r.Examples) > 0 {
				return true
			}
		}
		time.Sleep(2 * time.Second)
		return false
	})
	if !ok {
		t.Fatalf("skein diff never showed the odd shadow's ~300 compared answers with an example:\n%s", out)
	}
	if strings.Contains(out, "s3cret-token") {
		t.Errorf("skein diff shows the Authorization header's value:\n%s", out)
	}
	for _, r := range diff.Rows {
		if !strings.HasPrefix(r.Backend, "shadow-odd.") {
			continue
		}
		t.Logf("skein diff: %s -> %s: %d match, %d mismatch; example %+v", r.Route, r.Backend, r.Match, r.Mismatch, r.Examples[0])
		if r.MismatchRate == nil || *r.MismatchRate < 0.07 || *r.MismatchRate > 0.13 {
			t.Errorf("skein diff mismatch_rate %v, want about 0.1", r.MismatchRate)
		}
		if e := r.Examples[0]; !e.BodyDiffers || e.PrimaryBody != "app" || e.MirrorBody != "odd" || e.Path != "/id" {
			t.Errorf("skein diff example %+v, want /id with bodies app vs odd", e)
		}
	}
}
