package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// routesManifest: a Service web split by an HTTPRoute over web-v1 and
// web-v2 (90/10; a request with x-canary: only goes to v2, v1 weighted 0),
// a slow HTTP service with a 200 ms request timeout, a slow gRPC service
// with a 200 ms timeout by annotation, and an idle client pod.
const routesManifest = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: routes}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-v1, namespace: routes}
spec:
  selector: {app: web, version: v1}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-v2, namespace: routes}
spec:
  selector: {app: web, version: v2}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: web-v1, namespace: routes, labels: {app: web, version: v1}}
spec:
  serviceAccountName: web
  command: [testapp, -http, ":8080"]
  ports: [{name: http, containerPort: 8080}]
  readinessProbe: {tcpSocket: {port: 8080}}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: web-v2, namespace: routes, labels: {app: web, version: v2}}
spec:
  serviceAccountName: web
  command: [testapp, -http, ":8080"]
  ports: [{name: http, containerPort: 8080}]
  readinessProbe: {tcpSocket: {port: 8080}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-split, namespace: routes}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 8080}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "only"}]}]
    backendRefs:
    - {name: web-v1, port: 8080, weight: 0}
    - {name: web-v2, port: 8080}
  - backendRefs:
    - {name: web-v1, port: 8080, weight: 90}
    - {name: web-v2, port: 8080, weight: 10}
---
apiVersion: v1
kind: Service
metadata: {name: slow, namespace: routes}
spec:
  selector: {app: slow}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: slow, namespace: routes, labels: {app: slow}}
spec:
  serviceAccountName: slow
  command: [testapp, -http, ":8080", -http-delay, 1s]
  ports: [{name: http, containerPort: 8080}]
  readinessProbe: {tcpSocket: {port: 8080}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: slow, namespace: routes}
spec:
  parentRefs: [{group: "", kind: Service, name: slow, port: 8080}]
  rules:
  - timeouts: {request: 200ms}
    backendRefs: [{name: slow, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: slowgrpc, namespace: routes}
spec:
  selector: {app: slowgrpc}
  ports: [{name: grpc, port: 8080, targetPort: 8080}]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: slowgrpc, namespace: routes, labels: {app: slowgrpc}}
spec:
  serviceAccountName: slowgrpc
  command: [testapp, -grpc, ":8080", -delay, 1s]
  ports: [{name: grpc, containerPort: 8080}]
  readinessProbe: {tcpSocket: {port: 8080}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: slowgrpc
  namespace: routes
  annotations: {skein.io/timeout-request: 200ms}
spec:
  parentRefs: [{group: "", kind: Service, name: slowgrpc, port: 8080}]
  rules:
  - backendRefs: [{name: slowgrpc, port: 8080}]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: client, namespace: routes, labels: {app: client}}
spec:
  serviceAccountName: client
  command: [testapp]
`

const webURL = "http://web.routes.svc.cluster.local:8080/id"

// splitShares sends n GETs and returns the share web-v2 answered; any
// failure fails the test.
func splitShares(t *testing.T, get func() (int, string, error), n int) (v2 float64, answers map[string]int) {
	t.Helper()
	answers = map[string]int{}
	for range n {
		code, body, err := get()
		if err != nil || code != 200 {
			t.Fatalf("request failed: %d %q %v", code, body, err)
		}
		answers[body]++
	}
	return float64(answers["web-v2-0"]) / float64(n), answers
}

func TestRoutesSplitTimeoutsAndBadRoutesInSkeinUp(t *testing.T) {
	requireRoot(t)
	m := startUpMesh(t, routesManifest)
	client := m.pod(t, "routes-client-0")
	c := podHTTP(t, client)
	get := func(header ...string) func() (int, string, error) {
		return func() (int, string, error) { return getBody(c, webURL, header...) }
	}

	// The route is in force once v2 answers at all (the proxy has the
	// policy), and both replicas serve once v1 has answered too (skein up
	// returns before every replica is ready).
	seen := map[string]bool{}
	if !waitFor(60*time.Second, func() bool {
		if code, b, _ := get()(); code == 200 {
			seen[b] = true
		}
		return seen["web-v1-0"] && seen["web-v2-0"]
	}) {
		t.Fatalf("web-v1 and web-v2 never both answered through the split: %v", seen)
	}

	t.Run("split 90/10 over 2,000 requests", func(t *testing.T) {
		v2, answers := splitShares(t, get(), 2000)
		t.Logf("answers: %v", answers)
		if v2 < 0.07 || v2 > 0.13 {
			t.Errorf("web-v2 got %.1f%% of 2,000 requests, want 10±3%%", 100*v2)
		}
	})

	t.Run("weight 0 gets none", func(t *testing.T) {
		_, answers := splitShares(t, get("x-canary", "only"), 300)
		if answers["web-v1-0"] > 0 {
			t.Errorf("web-v1, weighted 0 for x-canary: only, got %d of 300 requests: %v", answers["web-v1-0"], answers)
		}
	})

	t.Run("moving weights mid-run loses no request", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var (
			mu       sync.Mutex
			failures []string
			recent   []string
		)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for ctx.Err() == nil {
					code, body, err := get()()
					mu.Lock()
					if err != nil || code != 200 {
						failures = append(failures, strings.TrimSpace(body)+" "+errString(err))
					} else {
						recent = append(recent, body)
					}
					mu.Unlock()
				}
			})
		}
		time.Sleep(2 * time.Second)
		m.editManifest(t, "{name: web-v1, port: 8080, weight: 90}", "{name: web-v1, port: 8080, weight: 10}")
		m.editManifest(t, "{name: web-v2, port: 8080, weight: 10}", "{name: web-v2, port: 8080, weight: 90}")
		moved := waitFor(30*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			if len(recent) < 400 {
				return false
			}
			last := recent[len(recent)-400:]
			v2 := 0
			for _, b := range last {
				if b == "web-v2-0" {
					v2++
				}
			}
			return v2 > 320 // 90% expected, 80% is well clear of the old 10%
		})
		time.Sleep(time.Second)
		cancel()
		wg.Wait()
		if !moved {
			t.Errorf("the last 400 requests did not move to web-v2 within 30 s of the weight change")
		}
		if len(failures) > 0 {
			t.Errorf("%d of %d requests failed while the weights moved: %v", len(failures), len(failures)+len(recent), failures[:min(5, len(failures))])
		}
		t.Logf("%d requests while the weights moved", len(recent))
	})

	t.Run("request timeout answers 504 in 200-300 ms", func(t *testing.T) {
		for range 5 {
			start := time.Now()
			code, _, err := getBody(c, "http://slow.routes.svc.cluster.local:8080/id")
			took := time.Since(start)
			if err != nil || code != 504 {
				t.Fatalf("got %d %v, want 504", code, err)
			}
			if took < 200*time.Millisecond || took > 300*time.Millisecond {
				t.Errorf("504 after %v, want 200-300 ms", took)
			}
		}
	})

	t.Run("gRPC timeout answers DEADLINE_EXCEEDED in 200-300 ms", func(t *testing.T) {
		cc := podGRPC(t, client, "slowgrpc.routes.svc.cluster.local:8080")
		tc := testpb.NewTestServiceClient(cc)
		for range 5 {
			start := time.Now()
			_, err := tc.UnaryCall(context.Background(), &testpb.SimpleRequest{})
			took := time.Since(start)
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
			}
			if took < 200*time.Millisecond || took > 300*time.Millisecond {
				t.Errorf("DEADLINE_EXCEEDED after %v, want 200-300 ms", took)
			}
		}
	})

	t.Run("an invalid route is refused by name and the last good one keeps serving", func(t *testing.T) {
		// The split is back at 10/90 from the subtest before (or 90/10 if
		// it was skipped); a backend that does not exist is refused.
		before, _ := splitShares(t, get(), 200)
		m.editManifest(t, "{name: web-v2, port: 8080, weight: ", "{name: web-v9, port: 8080, weight: ")
		// skein up (which checks manifests before the controller sees
		// them) or the controller says which object and field are at fault.
		if !waitFor(30*time.Second, func() bool { return m.logsMention(t, "web-split", "backendRefs", "web-v9") }) {
			t.Errorf("neither skein up's nor the controller's log names HTTPRoute routes/web-split, its backendRefs and web-v9")
		}
		after, answers := splitShares(t, get(), 200)
		if after < before-0.15 || after > before+0.15 {
			t.Errorf("after an invalid edit web-v2 got %.0f%% (before: %.0f%%): the last good route should keep serving; %v", 100*after, 100*before, answers)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
