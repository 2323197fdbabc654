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

// authzService is the api workload's Service: HTTP (8080), gRPC (9090)
// and a line protocol (7070, opaque).
const authzService = `apiVersion: v1
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
`

// authzPolicies: each port of the api workload is owned by a Server whose
// accessPolicy is ACCESS; namespace-wide policies allow the identity of
// the allowed workload and the network IN-CIDR (the plainin client's
// address, written in once it is known). skein up and the Kubernetes test
// apply the same objects.
const authzPolicies = `apiVersion: policy.skein.io/v1alpha1
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
`

// authzManifest: skein up's api workload with authzService and
// authzPolicies, and four clients: allowed and other (meshed), plainin
// and plainout (unmeshed).
var authzManifest = authzService + `apiVersion: skein.io/v1alpha1
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
` + authzPolicies + authzClient("allowed", true) + authzClient("other", true) + authzClient("plainin", false) + authzClient("plainout", false)

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
func tryHTTP(c *http.Client, url string) outcome {
	req, _ := http.NewRequest("GET", url, nil)
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

// tryLines sends one line to the opaque port at addr and reads the
// greeting and the echo: allowed when both come, denied when the
// connection ends without a byte.
func tryLines(dial func(ctx context.Context, network, addr string) (net.Conn, error), addr, line string) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
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

// authzTarget is where a client reaches the api workload's three ports
// (host:port each).
type authzTarget struct{ http, grpc, lines string }

// upAuthzTarget: skein up names the Service.
var upAuthzTarget = authzTarget{"api.authz.svc.cluster.local:8080", "api.authz.svc.cluster.local:9090", "api.authz.svc.cluster.local:7070"}

// authzProbe is one client's way to the api workload.
type authzProbe struct {
	http *http.Client
	grpc testpb.TestServiceClient
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	to   authzTarget
}

// newAuthzProbe makes the clients of a probe whose connections dial
// makes.
func newAuthzProbe(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error), to authzTarget) authzProbe {
	t.Helper()
	return authzProbe{dialHTTP(t, dial), testpb.NewTestServiceClient(dialGRPC(t, dial, to.grpc)), dial, to}
}

func (p authzProbe) HTTP(path string) outcome  { return tryHTTP(p.http, "http://"+p.to.http+path) }
func (p authzProbe) GRPC() outcome             { return tryGRPC(p.grpc) }
func (p authzProbe) Lines(line string) outcome { return tryLines(p.dial, p.to.lines, line) }

// url is the address of path on the HTTP port.
func (p authzProbe) url(path string) string { return "http://" + p.to.http + path }

// try calls every port once; the opaque port gets line.
func (p authzProbe) try(line string) map[string]outcome {
	return map[string]outcome{"http": p.HTTP("/id"), "grpc": p.GRPC(), "lines": p.Lines(line)}
}

// authzClients are the matrix's clients: allowed (meshed, its identity
// authorized), other (meshed, another identity), plainin (unmeshed, in
// the authorized network) and plainout (unmeshed, outside it).
var authzClients = []string{"allowed", "other", "plainin", "plainout"}

// authzAccessPolicies are the default policies, each checked after deny
// so that a policy with the outcomes of the one before cannot pass before
// it is in force.
var authzAccessPolicies = []string{"deny", "all-authenticated", "cluster-authenticated", "cluster-unauthenticated", "audit", "all-unauthenticated"}

// defaultAllows says whether an access policy lets through a client that
// no AuthorizationPolicy allows.
func defaultAllows(policy string, meshed, inClusterNetworks bool) bool {
	switch policy {
	case "all-unauthenticated", "audit":
		return true
	case "all-authenticated":
		return meshed
	case "cluster-unauthenticated":
		return inClusterNetworks
	case "cluster-authenticated":
		return meshed && inClusterNetworks
	}
	return false // deny
}

// authzMatrix checks every client on every protocol under every access
// policy of the api workload's Servers.
type authzMatrix struct {
	probes map[string]authzProbe // by authzClients' names
	// setAccess puts policy in every Server's accessPolicy.
	setAccess func(t *testing.T, policy string)
	// inClusterNetworks: whether the clients' addresses are in the
	// controller's cluster networks (the cluster-* policies').
	inClusterNetworks bool
	// witness returns the lines the application has received on its
	// opaque port so far (testapp -log-input: "line <text>").
	witness func(t *testing.T) string
}

func (m authzMatrix) run(t *testing.T) {
	for _, policy := range authzAccessPolicies {
		t.Run(policy, func(t *testing.T) {
			if policy != "deny" {
				m.setAccess(t, "deny")
				if !waitFor(20*time.Second, func() bool {
					return !m.probes["other"].HTTP("/id").allowed && !m.probes["plainout"].HTTP("/id").allowed
				}) {
					t.Fatal("deny never took effect")
				}
			}
			m.setAccess(t, policy)
			expect := func(client string) bool {
				if client == "allowed" || client == "plainin" {
					return true // an AuthorizationPolicy allows them
				}
				return defaultAllows(policy, client == "other", m.inClusterNetworks)
			}
			// The change reaches the proxy: wait until every cell holds,
			// then check each once more. The clients try at once.
			check := func(report bool, line func(client string) string) bool {
				got := make(map[string]map[string]outcome, len(authzClients))
				var mu sync.Mutex
				var wg sync.WaitGroup
				for _, client := range authzClients {
					wg.Go(func() {
						o := m.probes[client].try(line(client))
						mu.Lock()
						got[client] = o
						mu.Unlock()
					})
				}
				wg.Wait()
				ok := true
				for _, client := range authzClients {
					for proto, o := range got[client] {
						if o.allowed != expect(client) {
							ok = false
							if report {
								t.Errorf("%s, %s over %s: allowed=%v (%s), want %v", policy, client, proto, o.allowed, o.detail, expect(client))
							}
						}
					}
				}
				return ok
			}
			probeLine := func(client string) string { return "probe-from-" + client }
			waitFor(20*time.Second, func() bool { return check(false, probeLine) })
			// Each cell once more, the opaque port's line naming it: a
			// denied client's line must not have reached the application.
			cellLine := func(client string) string { return "cell-" + policy + "-" + client }
			check(true, cellLine)
			time.Sleep(300 * time.Millisecond)
			received := m.witness(t)
			for _, client := range authzClients {
				if got := strings.Contains(received, "line "+cellLine(client)); got != expect(client) {
					t.Errorf("%s, %s over the opaque port: the application received the line: %v, want %v", policy, client, got, expect(client))
				}
			}
		})
	}
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
	probes := map[string]authzProbe{}
	for name, h := range clients {
		probes[name] = newAuthzProbe(t, dialFrom(t, h), upAuthzTarget)
	}
	// Wait for the mesh and the first policy: the allowed identity gets
	// through on every protocol.
	if !waitFor(60*time.Second, func() bool {
		got := probes["allowed"].try("hello")
		return got["http"].allowed && got["grpc"].allowed && got["lines"].allowed
	}) {
		t.Fatalf("the allowed client never got through: %v", probes["allowed"].try("hello"))
	}

	// Every client's address is in skein up's cluster network
	// (198.18.0.0/16).
	authzMatrix{
		probes:            probes,
		setAccess:         func(t *testing.T, policy string) { setAccess(policy) },
		inClusterNetworks: true,
		witness:           func(t *testing.T) string { return strings.Join(m.logLines(t, "api-0", "line "), "\n") },
	}.run(t)

	t.Run("denied opaque connections reach no byte of the application", func(t *testing.T) {
		setAccess("deny")
		waitFor(20*time.Second, func() bool { return !probes["plainout"].Lines("probe").allowed })
		before := len(m.logLines(t, "api-0", "line "))
		for _, client := range []string{"other", "plainout"} {
			if got := probes[client].Lines("secret-from-" + client); got.allowed {
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
		got := probes["other"].HTTP("/id")
		if got.allowed || !strings.Contains(got.detail, "authz/api-http") {
			t.Errorf("a denied meshed client got %q, want 403 naming Server authz/api-http", got.detail)
		}
		if got := probes["plainout"].HTTP("/id"); got.allowed || got.detail != "403 " {
			t.Errorf("a denied unmeshed client got %q, want a bare 403", got.detail)
		}
	})

	t.Run("per-route policy: /public allowed and /admin denied for the same client", func(t *testing.T) {
		b := mustRead(t, m.manifestPath)
		writeFile(t, m.manifestPath, b+authzRoutes)
		if !waitFor(20*time.Second, func() bool { return probes["other"].HTTP("/public").allowed }) {
			t.Fatalf("/public never allowed for other: %v", probes["other"].HTTP("/public"))
		}
		for range 20 {
			if got := probes["other"].HTTP("/public"); !got.allowed {
				t.Errorf("/public denied for other: %s", got.detail)
			}
			if got := probes["other"].HTTP("/admin"); got.allowed {
				t.Errorf("/admin allowed for other: %s", got.detail)
			}
		}
	})

	t.Run("audit: would-be denials succeed, counted and logged with the Server", func(t *testing.T) {
		setAccess("audit")
		if !waitFor(20*time.Second, func() bool { return probes["plainout"].HTTP("/admin").allowed }) {
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
		waitFor(20*time.Second, func() bool { return probes["other"].Lines("probe").allowed })
		c, err := probes["other"].dial(context.Background(), "tcp", upAuthzTarget.lines)
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
				got := probes["allowed"].HTTP("/public")
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
		if !waitFor(20*time.Second, func() bool { return probes["other"].Lines("again").allowed }) {
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
		checkRateLimits(t, probes, map[string]int{"other": 10, "allowed": 25})
		m.editManifest(t, ", rateLimit: {identity: {requestsPerSecond: 10}, overrides: [{requestsPerSecond: 25, clientRefs: [{kind: ServiceAccount, name: allowed}]}]}}", "}")
	})

	t.Run("an invalid policy is refused by name and the last good one is enforced", func(t *testing.T) {
		setAccess("deny")
		// (The Server has routes now: /public is one, /id would be 404.)
		if !waitFor(20*time.Second, func() bool { return !probes["plainout"].HTTP("/public").allowed }) {
			t.Fatalf("plainout never denied under deny")
		}
		m.editManifest(t, "{cidr: "+inCIDR+"}", "{cidr: 10.0.0.0/99}")
		if !waitFor(30*time.Second, func() bool { return m.logsMention(t, "in-net", "spec.networks[0].cidr") }) {
			t.Errorf("neither skein up nor the controller named NetworkAuthentication in-net's spec.networks[0].cidr")
		}
		time.Sleep(2 * time.Second)
		if got := probes["plainin"].HTTP("/public"); !got.allowed {
			t.Errorf("after the invalid edit plainin was denied (%s): the last good policy should hold", got.detail)
		}
		if got := probes["plainout"].HTTP("/public"); got.allowed {
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

// checkRateLimits waits for the limits to be in force (a burst of 30
// requests from each client meets a 429), lets the buckets refill, offers
// 50 requests a second for 3 s to /public from each client of limits at
// once, and checks that, after the first second
// (which may hold the burst), limit ± 2 a second reach the application
// (its 404: /public is not one of its pages) and the rest get 429.
func checkRateLimits(t *testing.T, probes map[string]authzProbe, limits map[string]int) {
	t.Helper()
	for client := range limits {
		limited := func() bool {
			for range 30 {
				if code, _, _ := getBody(probes[client].http, probes[client].url("/public")); code == 429 {
					return true
				}
			}
			return false
		}
		if !waitFor(20*time.Second, limited) {
			t.Fatalf("no 429 for %s sending 30 requests at once: the rate limit never took effect", client)
		}
	}
	time.Sleep(time.Second) // the buckets refill
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
				code, _, _ := getBody(probes[client].http, probes[client].url("/public"))
				sec := min(int(time.Since(start)/time.Second), seconds)
				tl.mu.Lock()
				defer tl.mu.Unlock()
				switch code {
				case 429:
					tl.limited++
				case 404:
					tl.ok[sec]++
				default:
					tl.other = append(tl.other, code)
				}
			})
		}
		wg.Wait()
		return &tl
	}
	tallies := map[string]*tally{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for client := range limits {
		wg.Go(func() {
			tl := count(client)
			mu.Lock()
			tallies[client] = tl
			mu.Unlock()
		})
	}
	wg.Wait()
	for client, limit := range limits {
		tl := tallies[client]
		t.Logf("%s (%d/s): %v per second, %d refused", client, limit, tl.ok, tl.limited)
		if len(tl.other) > 0 {
			t.Errorf("%s got answers other than the app's and 429: %v", client, tl.other)
		}
		for sec := 1; sec < seconds; sec++ {
			if got := tl.ok[sec]; got < limit-2 || got > limit+2 {
				t.Errorf("%s: %d requests through in second %d, want %d ± 2", client, got, sec+1, limit)
			}
		}
		if tl.limited < (rate-limit-2)*(seconds-1) {
			t.Errorf("%s: only %d requests refused with 429", client, tl.limited)
		}
	}
}
