package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/netns"
)

// authzManifest: the api workload serves HTTP (8080), gRPC (9090) and a
// line protocol (7070, opaque), each port owned by a Server whose
// accessPolicy is ACCESS; namespace-wide policies allow the identity of
// the allowed workload and the network IN-CIDR (the plainin workload's
// address, written in once it is known). Routes /public and /admin of the
// HTTP Server: only /public is open to the other workload. Four clients:
// allowed and other (meshed), plainin and plainout (unmeshed).
var authzManifest = `apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: authz
  annotations: {skein.io/opaque-ports: "7070"}
spec:
  selector: {app: api}
  ports:
  - {name: http, port: 8080, targetPort: 8080}
  - {name: grpc, port: 9090, targetPort: 9090}
  - {name: lines, port: 7070, targetPort: 7070}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: api, namespace: authz, labels: {app: api}}
spec:
  serviceAccountName: api
  command: [testapp, -http, ":8080", -grpc, ":9090", -banner, ":7070", -log-input]
  ports:
  - {name: http, containerPort: 8080}
  - {name: grpc, containerPort: 9090}
  - {name: lines, containerPort: 7070}
  readinessProbe: {tcpSocket: {port: 8080}}
---
apiVersion: policy.skein.io/v1alpha1
kind: Server
metadata: {name: api-http, namespace: authz}
spec: {podSelector: {matchLabels: {app: api}}, port: http, accessPolicy: ACCESS}
---
apiVersion: policy.skein.io/v1alpha1
kind: Server
metadata: {name: api-grpc, namespace: authz}
spec: {podSelector: {matchLabels: {app: api}}, port: grpc, accessPolicy: ACCESS}
---
apiVersion: policy.skein.io/v1alpha1
kind: Server
metadata: {name: api-lines, namespace: authz}
spec: {podSelector: {matchLabels: {app: api}}, port: lines, accessPolicy: ACCESS}
---
apiVersion: policy.skein.io/v1alpha1
kind: MeshTLSAuthentication
metadata: {name: allowed-id, namespace: authz}
spec: {identityRefs: [{kind: ServiceAccount, name: allowed}]}
---
apiVersion: policy.skein.io/v1alpha1
kind: NetworkAuthentication
metadata: {name: in-net, namespace: authz}
spec: {networks: [{cidr: IN-CIDR}]}
---
apiVersion: policy.skein.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-allowed, namespace: authz}
spec:
  targetRef: {kind: Namespace, name: authz}
  requiredAuthenticationRefs: [{group: policy.skein.io, kind: MeshTLSAuthentication, name: allowed-id}]
---
apiVersion: policy.skein.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-in-net, namespace: authz}
spec:
  targetRef: {kind: Namespace, name: authz}
  requiredAuthenticationRefs: [{group: policy.skein.io, kind: NetworkAuthentication, name: in-net}]
---
` + authzClient("allowed", true) + authzClient("other", true) + authzClient("plainin", false) + authzClient("plainout", false)

func authzClient(name string, meshed bool) string {
	return fmt.Sprintf(`apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: %[1]s, namespace: authz, labels: {app: %[1]s}}
spec:
  serviceAccountName: %[1]s
  inject: %[2]v
  command: [testapp]
---
`, name, meshed)
}

// authzRoutes: the HTTP Server's routes, and /public open to other.
const authzRoutes = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: public, namespace: authz}
spec:
  parentRefs: [{group: policy.skein.io, kind: Server, name: api-http}]
  rules: [{matches: [{path: {type: PathPrefix, value: /public}}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: admin, namespace: authz}
spec:
  parentRefs: [{group: policy.skein.io, kind: Server, name: api-http}]
  rules: [{matches: [{path: {type: PathPrefix, value: /admin}}]}]
---
apiVersion: policy.skein.io/v1alpha1
kind: MeshTLSAuthentication
metadata: {name: other-id, namespace: authz}
spec: {identityRefs: [{kind: ServiceAccount, name: other}]}
---
apiVersion: policy.skein.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: public-for-other, namespace: authz}
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: public}
  requiredAuthenticationRefs: [{group: policy.skein.io, kind: MeshTLSAuthentication, name: other-id}]
---
`

// hostIP is the address of a skein up host.
func hostIP(t *testing.T, h *netns.Host) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.Namespace, "ip", "-4", "-o", "addr", "show", "dev", "eth0").Output()
	if err != nil {
		t.Fatalf("address of %s: %v", h.Name, err)
	}
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "inet" && i+1 < len(f) {
			return strings.Split(f[i+1], "/")[0]
		}
	}
	t.Fatalf("no address of %s in %q", h.Name, out)
	return ""
}

// outcome is what one client got on one protocol.
type outcome struct {
	allowed bool
	detail  string
}

// tryHTTP: allowed when the application answered (200 for /id), denied on
// 403.
func tryHTTP(c *http.Client, path string) outcome {
	req, _ := http.NewRequest("GET", "http://api.authz.svc.cluster.local:8080"+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		return outcome{false, "error " + err.Error()}
	}
	resp.Body.Close()
	if resp.StatusCode == 403 {
		return outcome{false, "403 " + resp.Header.Get("Skein-Proxy-Error")}
	}
	return outcome{true, fmt.Sprint(resp.StatusCode)}
}

// tryGRPC: allowed on OK, denied on PERMISSION_DENIED.
func tryGRPC(tc testpb.TestServiceClient) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{})
	switch status.Code(err) {
	case codes.OK:
		return outcome{true, "OK"}
	case codes.PermissionDenied:
		return outcome{false, "PERMISSION_DENIED " + status.Convert(err).Message()}
	}
	return outcome{false, "error " + err.Error()}
}

// tryLines sends one line on the opaque port and reads the greeting and
// the echo: allowed when both come, denied when the connection ends
// without a byte.
func tryLines(dial func(ctx context.Context, network, addr string) (net.Conn, error), line string) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", "api.authz.svc.cluster.local:7070")
	if err != nil {
		return outcome{false, "dial " + err.Error()}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "%s\r\n", line)
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil {
		return outcome{false, fmt.Sprintf("closed after %d bytes: %v", len(greeting), err)}
	}
	echo, _ := r.ReadString('\n')
	return outcome{strings.HasPrefix(echo, "250 "+line), strings.TrimSpace(greeting + " " + echo)}
}

func TestAuthorizationMatrixInSkeinUp(t *testing.T) {
	requireRoot(t)
	m := startUpMesh(t, strings.ReplaceAll(strings.Replace(authzManifest, "IN-CIDR", "192.0.2.1/32", 1), "ACCESS", "all-unauthenticated"))
	clients := map[string]*netns.Host{}
	for _, name := range []string{"allowed", "other", "plainin", "plainout"} {
		clients[name] = m.pod(t, "authz-"+name+"-0")
	}
	inCIDR := hostIP(t, clients["plainin"]) + "/32"
	access := "all-unauthenticated"
	m.editManifest(t, "{cidr: 192.0.2.1/32}", "{cidr: "+inCIDR+"}")
	setAccess := func(policy string) {
		t.Helper()
		m.editManifest(t, "accessPolicy: "+access+"}", "accessPolicy: "+policy+"}")
		m.editManifest(t, "accessPolicy: "+access+"}", "accessPolicy: "+policy+"}")
		m.editManifest(t, "accessPolicy: "+access+"}", "accessPolicy: "+policy+"}")
		access = policy
	}
	type probe struct {
		http  *http.Client
		grpc  testpb.TestServiceClient
		lines func(ctx context.Context, network, addr string) (net.Conn, error)
	}
	probes := map[string]probe{}
	for name, h := range clients {
		probes[name] = probe{podHTTP(t, h), testpb.NewTestServiceClient(podGRPC(t, h, "api.authz.svc.cluster.local:9090")), dialFrom(t, h)}
	}
	try := func(client string) map[string]outcome {
		p := probes[client]
		return map[string]outcome{
			"http":  tryHTTP(p.http, "/id"),
			"grpc":  tryGRPC(p.grpc),
			"lines": tryLines(p.lines, "hello-from-"+client),
		}
	}
	// Wait for the mesh and the first policy: the allowed identity gets
	// through on every protocol.
	if !waitFor(60*time.Second, func() bool {
		got := try("allowed")
		return got["http"].allowed && got["grpc"].allowed && got["lines"].allowed
	}) {
		t.Fatalf("the allowed client never got through: %v", try("allowed"))
	}

	// Which clients each access policy lets through when no
	// authorization does: every client's address is in skein up's cluster
	// network (198.18.0.0/16).
	want := map[string]map[string]bool{
		"all-unauthenticated":     {"other": true, "plainout": true},
		"all-authenticated":       {"other": true, "plainout": false},
		"cluster-unauthenticated": {"other": true, "plainout": true},
		"cluster-authenticated":   {"other": true, "plainout": false},
		"deny":                    {"other": false, "plainout": false},
		"audit":                   {"other": true, "plainout": true},
	}
	for _, policy := range []string{"deny", "all-authenticated", "cluster-authenticated", "cluster-unauthenticated", "audit", "all-unauthenticated"} {
		t.Run(policy, func(t *testing.T) {
			if policy != "deny" {
				// From deny each time, so that a policy with the outcomes
				// of the one before cannot pass before it is in force.
				setAccess("deny")
				if !waitFor(20*time.Second, func() bool {
					return !tryHTTP(probes["other"].http, "/id").allowed && !tryHTTP(probes["plainout"].http, "/id").allowed
				}) {
					t.Fatal("deny never took effect")
				}
			}
			setAccess(policy)
			expect := func(client string) bool {
				if client == "allowed" || client == "plainin" {
					return true // an AuthorizationPolicy allows them
				}
				return want[policy][client]
			}
			// The change reaches the proxy: wait until every cell holds,
			// then check each once more.
			check := func(report bool) bool {
				ok := true
				for _, client := range []string{"allowed", "other", "plainin", "plainout"} {
					for proto, got := range try(client) {
						if got.allowed != expect(client) {
							ok = false
							if report {
								t.Errorf("%s, %s over %s: allowed=%v (%s), want %v", policy, client, proto, got.allowed, got.detail, expect(client))
							}
						}
					}
				}
				return ok
			}
			if !waitFor(20*time.Second, func() bool { return check(false) }) {
				check(true)
			}
		})
	}

	t.Run("denied opaque connections reach no byte of the application", func(t *testing.T) {
		setAccess("deny")
		waitFor(20*time.Second, func() bool { return !tryLines(probes["plainout"].lines, "probe").allowed })
		before := len(m.logLines(t, "api-0", "line "))
		for _, client := range []string{"other", "plainout"} {
			if got := tryLines(probes[client].lines, "secret-from-"+client); got.allowed {
				t.Errorf("%s got through under deny: %s", client, got.detail)
			}
		}
		time.Sleep(500 * time.Millisecond)
		for _, l := range m.logLines(t, "api-0", "line ")[before:] {
			if strings.Contains(l, "secret-from-") {
				t.Errorf("the application received %q from a denied client", l)
			}
		}
	})

	t.Run("denied meshed clients are told the Server, unmeshed ones nothing", func(t *testing.T) {
		got := tryHTTP(probes["other"].http, "/id")
		if got.allowed || !strings.Contains(got.detail, "authz/api-http") {
			t.Errorf("a denied meshed client got %q, want 403 naming Server authz/api-http", got.detail)
		}
		if got := tryHTTP(probes["plainout"].http, "/id"); got.allowed || got.detail != "403 " {
			t.Errorf("a denied unmeshed client got %q, want a bare 403", got.detail)
		}
	})

	t.Run("per-route policy: /public allowed and /admin denied for the same client", func(t *testing.T) {
		b := mustRead(t, m.manifestPath)
		writeFile(t, m.manifestPath, b+authzRoutes)
		if !waitFor(20*time.Second, func() bool { return tryHTTP(probes["other"].http, "/public").allowed }) {
			t.Fatalf("/public never allowed for other: %v", tryHTTP(probes["other"].http, "/public"))
		}
		for range 20 {
			if got := tryHTTP(probes["other"].http, "/public"); !got.allowed {
				t.Errorf("/public denied for other: %s", got.detail)
			}
			if got := tryHTTP(probes["other"].http, "/admin"); got.allowed {
				t.Errorf("/admin allowed for other: %s", got.detail)
			}
		}
	})

	t.Run("audit: would-be denials succeed, counted and logged with the Server", func(t *testing.T) {
		setAccess("audit")
		if !waitFor(20*time.Second, func() bool { return tryHTTP(probes["plainout"].http, "/admin").allowed }) {
			t.Fatalf("under audit, plainout was still denied")
		}
		api := m.pod(t, "authz-api-0")
		audited := scrape(t, api).sum("inbound_http_authz_allow_total", map[string]string{"authz_name": "audit"})
		if audited == 0 {
			t.Errorf("no request counted as allowed by audit")
		}
		if !waitFor(15*time.Second, func() bool { return m.logsMentionIn(t, "api-0.proxy", "audit", "authz/api-http") }) {
			t.Errorf("the api's proxy logged no audited would-be denial naming authz/api-http")
		}
	})

	t.Run("tightening closes a long-lived opaque connection; loosening lets the next through", func(t *testing.T) {
		setAccess("all-unauthenticated")
		waitFor(20*time.Second, func() bool { return tryLines(probes["other"].lines, "probe").allowed })
		c, err := probes["other"].lines(context.Background(), "tcp", "api.authz.svc.cluster.local:7070")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "open\r\n")
		r := bufio.NewReader(c)
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatalf("the long-lived connection got no greeting: %v", err)
		}
		r.ReadString('\n')
		closed := make(chan time.Time, 1)
		go func() {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			r.ReadString('\n')
			closed <- time.Now()
		}()
		// Allowed traffic keeps flowing while the policy changes.
		var wg sync.WaitGroup
		ctx, cancel := context.WithCancel(context.Background())
		var failures, served int
		var mu sync.Mutex
		wg.Go(func() {
			for ctx.Err() == nil {
				got := tryHTTP(probes["allowed"].http, "/public")
				mu.Lock()
				served++
				if !got.allowed {
					failures++
				}
				mu.Unlock()
			}
		})
		changed := time.Now()
		setAccess("deny")
		select {
		case at := <-closed:
			t.Logf("the opaque connection closed %v after the manifest edit", at.Sub(changed).Round(time.Millisecond))
		case <-time.After(20 * time.Second):
			t.Errorf("the opaque connection was still open 20 s after the policy denied it")
		}
		setAccess("all-unauthenticated")
		if !waitFor(20*time.Second, func() bool { return tryLines(probes["other"].lines, "again").allowed }) {
			t.Errorf("after loosening, other's next connection was still denied")
		}
		cancel()
		wg.Wait()
		if failures > 0 {
			t.Errorf("%d of %d requests of the allowed client failed while the policy changed", failures, served)
		}
	})

	t.Run("rate limits: 10/s per identity, 25/s for an override", func(t *testing.T) {
		m.editManifest(t, "spec: {podSelector: {matchLabels: {app: api}}, port: http, accessPolicy: "+access+"}",
			"spec: {podSelector: {matchLabels: {app: api}}, port: http, accessPolicy: "+access+", rateLimit: {identity: {requestsPerSecond: 10}, overrides: [{requestsPerSecond: 25, clientRefs: [{kind: ServiceAccount, name: allowed}]}]}}")
		limited := func() bool {
			for range 30 {
				if code, _, _ := getBody(probes["other"].http, "http://api.authz.svc.cluster.local:8080/public"); code == 429 {
					return true
				}
			}
			return false
		}
		if !waitFor(20*time.Second, limited) {
			t.Fatal("no 429 for a client sending 30 requests at once: the rate limit never took effect")
		}
		time.Sleep(time.Second) // the buckets refill
		// 50 requests a second for 3 s from each of other (10/s) and
		// allowed (its override, 25/s), at the same time.
		const rate, seconds = 50, 3
		start := time.Now()
		type tally struct {
			mu      sync.Mutex
			ok      [seconds + 1]int
			limited int
			other   []int
		}
		count := func(client string) *tally {
			var tl tally
			var wg sync.WaitGroup
			tick := time.NewTicker(time.Second / rate)
			defer tick.Stop()
			for range rate * seconds {
				<-tick.C
				wg.Go(func() {
					code, _, _ := getBody(probes[client].http, "http://api.authz.svc.cluster.local:8080/public")
					sec := min(int(time.Since(start)/time.Second), seconds)
					tl.mu.Lock()
					defer tl.mu.Unlock()
					switch code {
					case 429:
						tl.limited++
					case 404: // the application's answer: /public is not one of its pages
						tl.ok[sec]++
					default:
						tl.other = append(tl.other, code)
					}
				})
			}
			wg.Wait()
			return &tl
		}
		var other, allowed *tally
		var wg sync.WaitGroup
		wg.Go(func() { other = count("other") })
		wg.Go(func() { allowed = count("allowed") })
		wg.Wait()
		t.Logf("other (10/s): %v per second, %d refused; allowed (25/s): %v per second, %d refused", other.ok, other.limited, allowed.ok, allowed.limited)
		for _, c := range []struct {
			name  string
			tl    *tally
			limit int
		}{{"other", other, 10}, {"allowed", allowed, 25}} {
			if len(c.tl.other) > 0 {
				t.Errorf("%s got answers other than the app's and 429: %v", c.name, c.tl.other)
			}
			// The first second may hold the burst; the next are the rate.
			for sec := 1; sec < seconds; sec++ {
				if got := c.tl.ok[sec]; got < c.limit-2 || got > c.limit+2 {
					t.Errorf("%s: %d requests through in second %d, want %d ± 2", c.name, got, sec+1, c.limit)
				}
			}
			if c.tl.limited < (rate-c.limit-2)*(seconds-1) {
				t.Errorf("%s: only %d requests refused with 429", c.name, c.tl.limited)
			}
		}
		m.editManifest(t, ", rateLimit: {identity: {requestsPerSecond: 10}, overrides: [{requestsPerSecond: 25, clientRefs: [{kind: ServiceAccount, name: allowed}]}]}}", "}")
	})

	t.Run("an invalid policy is refused by name and the last good one is enforced", func(t *testing.T) {
		setAccess("deny")
		// (The Server has routes now: /public is one, /id would be 404.)
		if !waitFor(20*time.Second, func() bool { return !tryHTTP(probes["plainout"].http, "/public").allowed }) {
			t.Fatalf("plainout never denied under deny")
		}
		m.editManifest(t, "{cidr: "+inCIDR+"}", "{cidr: 10.0.0.0/99}")
		if !waitFor(30*time.Second, func() bool { return m.logsMention(t, "in-net", "spec.networks[0].cidr") }) {
			t.Errorf("neither skein up nor the controller named NetworkAuthentication in-net's spec.networks[0].cidr")
		}
		time.Sleep(2 * time.Second)
		if got := tryHTTP(probes["plainin"].http, "/public"); !got.allowed {
			t.Errorf("after the invalid edit plainin was denied (%s): the last good policy should hold", got.detail)
		}
		if got := tryHTTP(probes["plainout"].http, "/public"); got.allowed {
			t.Errorf("after the invalid edit plainout was allowed: the last good policy (deny) should hold")
		}
	})

	t.Run("skein authz explain names the rule", func(t *testing.T) {
		out, err := skein(context.Background(), "authz", "explain", "-n", "authz", "--from", "spiffe://cluster.local/ns/authz/sa/allowed", "--to", "api:8080", "-o", "json", "--api", m.api())
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Allowed       bool   `json:"allowed"`
			Server        string `json:"server"`
			Authorization string `json:"authorization"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !got.Allowed || got.Server != "authz/api-http" || got.Authorization != "authz/allow-allowed" {
			t.Errorf("explain for the allowed identity: %s", out)
		}
	})
}
