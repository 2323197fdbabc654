package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// pool is a Service over two healthy replicas and one failing one (its
// own Workload, same app label), with the given service annotations; the
// failing one answers 500 at once for paths under failPaths, the healthy
// ones take healthyDelay.
func pool(name, annotations, healthyDelay, failPaths string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: breakers
  annotations: {%[2]s}
spec:
  selector: {app: %[1]s}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: %[1]s-good, namespace: breakers, labels: {app: %[1]s}}
spec:
  serviceAccountName: %[1]s
  replicas: 2
  command: [testapp, -http, ":8080", -http-delay, "%[3]s", -log-input]
  ports: [{name: http, containerPort: 8080}]
  readinessProbe: {tcpSocket: {port: 8080}}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: %[1]s-bad, namespace: breakers, labels: {app: %[1]s}}
spec:
  serviceAccountName: %[1]s
  command: [testapp, -http, ":8080", -http-fail, "%[4]s", -log-input]
  ports: [{name: http, containerPort: 8080}]
  readinessProbe: {tcpSocket: {port: 8080}}
---
`, name, annotations, healthyDelay, failPaths)
}

// breakersManifest: eject (a consecutive-failure breaker, 5 failures, 4 s
// first penalty; its failing replica fails /fail only, so that the warm-up
// on /id, which may reach it before the others are ready, leaves it with no
// failures to count), shared (route /a/ has a breaker of its own; its failing
// replica fails /a/ only) and fastfail (breakers off; the failing replica
// answers at once while the healthy ones take 30 ms; requests marked
// x-retry: on are retried).
var breakersManifest = pool("eject", `skein.io/breaker-consecutive: "5", skein.io/breaker-min-penalty: 4s, skein.io/breaker-max-penalty: 1m, skein.io/breaker-jitter: "0.05"`, "0s", "/fail") +
	pool("shared", "", "0s", "/a/") + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shared-a
  namespace: breakers
  annotations: {skein.io/breaker-consecutive: "3", skein.io/breaker-min-penalty: 30s}
spec:
  parentRefs: [{group: "", kind: Service, name: shared, port: 8080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs: [{name: shared, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shared-rest, namespace: breakers}
spec:
  parentRefs: [{group: "", kind: Service, name: shared, port: 8080}]
  rules:
  - backendRefs: [{name: shared, port: 8080}]
---
` + pool("fastfail", `skein.io/breaker-consecutive: "0"`, "30ms", "/") + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: fastfail-retry
  namespace: breakers
  annotations: {skein.io/retry-http: 5xx, skein.io/retry-limit: "2", skein.io/breaker-consecutive: "0"}
spec:
  parentRefs: [{group: "", kind: Service, name: fastfail, port: 8080}]
  rules:
  - matches: [{headers: [{name: x-retry, value: "on"}]}]
    backendRefs: [{name: fastfail, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: fastfail-rest, namespace: breakers, annotations: {skein.io/breaker-consecutive: "0"}}
spec:
  parentRefs: [{group: "", kind: Service, name: fastfail, port: 8080}]
  rules:
  - backendRefs: [{name: fastfail, port: 8080}]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: client, namespace: breakers, labels: {app: client}}
spec:
  serviceAccountName: client
  command: [testapp]
`

func TestBreakersInSkeinUp(t *testing.T) {
	requireRoot(t)
	m := startUpMesh(t, breakersManifest)
	c := podHTTP(t, m.pod(t, "breakers-client-0"))
	for _, svc := range []string{"eject", "shared", "fastfail"} {
		// Every replica answers (a 500 is the failing one answering).
		if !waitFor(60*time.Second, func() bool {
			for _, r := range []string{svc + "-good-0", svc + "-good-1", svc + "-bad-0"} {
				if len(m.logLines(t, r, "request /")) == 0 {
					getBody(c, "http://"+svc+".breakers.svc.cluster.local:8080/id")
					return false
				}
			}
			return true
		}) {
			t.Fatalf("not every replica of %s answered within 60 s", svc)
		}
	}

	t.Run("a failing replica is ejected after 5 failures and probed once after the penalty", func(t *testing.T) {
		// Every /fail request the failing replica gets fails (the healthy
		// ones answer 404, no failure), so the number it got is its run of
		// consecutive failures: the 5th ejects it.
		got := func() int { return len(m.logLines(t, "eject-bad-0", "request /fail")) }
		call := func() {
			if _, _, err := getBody(c, "http://eject.breakers.svc.cluster.local:8080/fail"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for start := time.Now(); got() < 5 && time.Since(start) < 40*time.Second; {
			call()
		}
		if n := got(); n != 5 {
			t.Fatalf("the failing replica got %d requests, want 5 then none: not ejected after 5 failures", n)
		}
		ejected := time.Now()
		var probeAt time.Duration
		for time.Since(ejected) < 11900*time.Millisecond {
			call()
			if n := got(); n > 5 && probeAt == 0 {
				probeAt = time.Since(ejected)
			}
		}
		t.Logf("the probe came %v after the ejection", probeAt)
		// Ejected for 4 s (+5% jitter), then one probe, which fails and
		// ejects it for 8 s: exactly one more request in the 11.9 s.
		if n := got(); n != 6 {
			t.Errorf("the failing replica got %d requests in the 11.9 s after its ejection, want exactly 1 probe", n-5)
		}
		if probeAt != 0 && probeAt < 3900*time.Millisecond {
			t.Errorf("the probe came %v after the ejection, before the 4 s penalty ended", probeAt)
		}
	})

	t.Run("a route's breaker leaves the replica's share of other routes alone", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() {
			for ctx.Err() == nil {
				getBody(c, "http://shared.breakers.svc.cluster.local:8080/a/x")
			}
		})
		badBefore := len(m.logLines(t, "shared-bad-0", "request /id"))
		answers := map[string]int{}
		for range 600 {
			code, body, err := getBody(c, "http://shared.breakers.svc.cluster.local:8080/id")
			if err != nil || code != 200 {
				t.Errorf("route B request failed: %d %v", code, err)
				break
			}
			answers[body]++
		}
		cancel()
		wg.Wait()
		badA := len(m.logLines(t, "shared-bad-0", "request /a/"))
		t.Logf("route B answers %v; the failing replica got %d route A requests, %d route B", answers, badA, len(m.logLines(t, "shared-bad-0", "request /id"))-badBefore)
		if share := float64(answers["shared-bad-0"]) / 600; share < 0.2 {
			t.Errorf("the replica failing route A got %.0f%% of route B, want about a third (>= 20%%)", 100*share)
		}
		if badA > 10 {
			t.Errorf("the replica failing route A got %d route A requests: route A's breaker (3 failures, 30 s) did not eject it", badA)
		}
	})

	for _, retry := range []string{"off", "on"} {
		t.Run("a replica failing fast gets less traffic, retries "+retry, func(t *testing.T) {
			before := len(m.logLines(t, "fastfail-bad-0", "request /id"))
			good := 0
			const n = 400
			for range n {
				code, _, err := getBody(c, "http://fastfail.breakers.svc.cluster.local:8080/id", "x-retry", retry)
				if err != nil {
					t.Fatal(err)
				}
				if code == 200 {
					good++
				}
			}
			bad := len(m.logLines(t, "fastfail-bad-0", "request /id")) - before
			t.Logf("retries %s: %d of %d succeeded; the failing replica got %d requests", retry, good, n, bad)
			if share := float64(bad) / n; share > 0.15 {
				t.Errorf("the replica answering 500 at once got %d requests for %d sent (%.0f%%), want well under its third (<= 15%%)", bad, n, 100*share)
			}
		})
	}
}
