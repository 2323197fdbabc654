package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skeinmesh/skein/internal/netns"
	proxyidentity "github.com/skeinmesh/skein/internal/proxy/identity"
	identitypb "github.com/skeinmesh/skein/proto/identity"
	policypb "github.com/skeinmesh/skein/proto/policy"
)

// grafanaGateManifest adds to the demo what its own traffic never makes,
// so that every panel of the Grafana dashboards has a series: gate, the
// workload the workload dashboard is read for, serves HTTP (8080, a deny
// Server that caller may call, 3 requests/s per identity), gRPC (9090,
// an audit Server) and a line protocol (7070, opaque, a deny Server that
// caller may call); caller and stranger are meshed clients of it. gate
// itself calls flaky (one healthy replica, one that answers 500 for /fail
// and /a/): the Service's breaker ejects after 3 failures in a row for
// 1-2 s. The route flaky-a sends /a... to the failing replica alone
// (Service flaky-bad) with a breaker of its own (a route's breaker is its
// own only where it differs from the Service's) that ejects after 2 and
// may eject every endpoint, so that the request after the penalty is
// always its probe; flaky-a also retries 5xx once. flaky-slow times out
// after 1 ms, in front of a replica that answers after 100 ms: the mesh's
// round trip alone no longer takes a millisecond.
const grafanaGateManifest = `
---
apiVersion: v1
kind: Service
metadata:
  name: gate
  namespace: demo
  annotations: {skein.io/opaque-ports: "7070"}
spec:
  selector: {app: gate}
  ports:
  - {name: http, port: 8080, targetPort: 8080}
  - {name: grpc, port: 9090, targetPort: 9090}
  - {name: lines, port: 7070, targetPort: 7070}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: gate, namespace: demo, labels: {app: gate}}
spec:
  serviceAccountName: gate
  command: [testapp, -http, ":8080", -grpc, ":9090", -banner, ":7070", -id, gate]
  ports:
  - {name: http, containerPort: 8080}
  - {name: grpc, containerPort: 9090}
  - {name: lines, containerPort: 7070}
  readinessProbe: {tcpSocket: {port: 8080}}
---
apiVersion: policy.skein.io/v1alpha1
kind: Server
metadata: {name: gate-http, namespace: demo}
spec: {podSelector: {matchLabels: {app: gate}}, port: http, accessPolicy: deny, rateLimit: {identity: {requestsPerSecond: 3}}}
---
apiVersion: policy.skein.io/v1alpha1
kind: Server
metadata: {name: gate-grpc, namespace: demo}
spec: {podSelector: {matchLabels: {app: gate}}, port: grpc, accessPolicy: audit}
---
apiVersion: policy.skein.io/v1alpha1
kind: Server
metadata: {name: gate-lines, namespace: demo}
spec: {podSelector: {matchLabels: {app: gate}}, port: lines, accessPolicy: deny}
---
apiVersion: policy.skein.io/v1alpha1
kind: MeshTLSAuthentication
metadata: {name: gate-callers, namespace: demo}
spec: {identityRefs: [{kind: ServiceAccount, name: caller}]}
---
apiVersion: policy.skein.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: gate-http-callers, namespace: demo}
spec:
  targetRef: {group: policy.skein.io, kind: Server, name: gate-http}
  requiredAuthenticationRefs: [{group: policy.skein.io, kind: MeshTLSAuthentication, name: gate-callers}]
---
apiVersion: policy.skein.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: gate-lines-callers, namespace: demo}
spec:
  targetRef: {group: policy.skein.io, kind: Server, name: gate-lines}
  requiredAuthenticationRefs: [{group: policy.skein.io, kind: MeshTLSAuthentication, name: gate-callers}]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: caller, namespace: demo, labels: {app: caller}}
spec: {serviceAccountName: caller, command: [testapp]}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: stranger, namespace: demo, labels: {app: stranger}}
spec: {serviceAccountName: stranger, command: [testapp]}
---
apiVersion: v1
kind: Service
metadata:
  name: flaky
  namespace: demo
  annotations: {skein.io/breaker-consecutive: "3", skein.io/breaker-min-penalty: 1s, skein.io/breaker-max-penalty: 2s}
spec:
  selector: {app: flaky}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: flaky-good, namespace: demo, labels: {app: flaky}}
spec:
  serviceAccountName: flaky
  command: [testapp, -http, ":8080"]
  ports: [{name: http, containerPort: 8080}]
  readinessProbe: {tcpSocket: {port: 8080}}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: flaky-bad, namespace: demo, labels: {app: flaky, variant: bad}}
spec:
  serviceAccountName: flaky
  command: [testapp, -http, ":8080", -http-fail, "/fail,/a/"]
  ports: [{name: http, containerPort: 8080}]
  readinessProbe: {tcpSocket: {port: 8080}}
---
apiVersion: v1
kind: Service
metadata: {name: flaky-bad, namespace: demo}
spec:
  selector: {app: flaky, variant: bad}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: flaky-a
  namespace: demo
  annotations: {skein.io/breaker-consecutive: "2", skein.io/breaker-min-penalty: 1s, skein.io/breaker-max-penalty: 2s, skein.io/breaker-max-ejected-percent: "100", skein.io/retry-http: 5xx, skein.io/retry-limit: "1"}
spec:
  parentRefs: [{group: "", kind: Service, name: flaky, port: 8080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /a}}]
    backendRefs: [{name: flaky-bad, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: flaky-slow, namespace: demo}
spec:
  selector: {app: flaky-slow}
  ports: [{name: http, port: 8080, targetPort: 8080}]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: flaky-slow, namespace: demo, labels: {app: flaky-slow}}
spec:
  serviceAccountName: flaky
  command: [testapp, -http, ":8080", -http-delay, "100ms"]
  ports: [{name: http, containerPort: 8080}]
  readinessProbe: {tcpSocket: {port: 8080}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: flaky-slow
  namespace: demo
  annotations: {skein.io/timeout-request: 1ms}
spec:
  parentRefs: [{group: "", kind: Service, name: flaky, port: 8080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    backendRefs: [{name: flaky-slow, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: flaky-rest, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: flaky, port: 8080}]
  rules:
  - backendRefs: [{name: flaky, port: 8080}]
`

// grafanaGateRoutes are the routes grafanaGateManifest adds.
var grafanaGateRoutes = []string{"demo/flaky-a", "demo/flaky-rest", "demo/flaky-slow"}

// grafanaGateFeeds are the feeds of the conditions grafanaGateManifest
// sets up, each a loop run until the test ends; the test can leave one
// out to see its panels go empty.
var grafanaGateFeeds = []string{"authz", "breakers", "certify", "inbound-stream"}

// feedGrafanaGate runs the named feeds (see grafanaGateFeeds) until the
// test ends. Every call's outcome is ignored: the feeds start while the
// mesh still starts, and the test judges by what Prometheus holds.
func feedGrafanaGate(t *testing.T, m *upMesh, feeds []string) {
	t.Helper()
	// The loops start once every client is made, and stop (the cleanup
	// registered last runs first) before the clients close.
	ctx, cancel := context.WithCancel(context.Background())
	type loop struct {
		d time.Duration
		f func()
	}
	var loops []loop
	every := func(d time.Duration, f func()) { loops = append(loops, loop{d, f}) }
	gate := authzTarget{"gate.demo.svc.cluster.local:8080", "gate.demo.svc.cluster.local:9090", "gate.demo.svc.cluster.local:7070"}
	for _, feed := range feeds {
		switch feed {
		case "authz":
			// caller: allowed on HTTP (10 at once: past the 3/s limit)
			// and on the opaque port. stranger: denied on both (the
			// opaque denial closes the connection, errno authz), and
			// allowed by audit on gRPC.
			caller := newAuthzProbe(t, dialFrom(t, m.pod(t, "demo-caller-0")), gate)
			stranger := newAuthzProbe(t, dialFrom(t, m.pod(t, "demo-stranger-0")), gate)
			every(time.Second, func() {
				for range 10 {
					caller.HTTP("/id")
				}
				caller.Lines("hello")
				stranger.HTTP("/id")
				stranger.Lines("hello")
				stranger.GRPC()
			})
		case "breakers":
			// From gate: /fail and /a/x, of which the failing replica
			// gets enough in a row to be ejected (by the Service's
			// breaker and flaky-a's), then /id and /a (flaky-a's, which
			// it answers 404, no failure), which its probes after the
			// penalties pass (restored), and one /slow (timed out).
			c := podHTTP(t, m.pod(t, "demo-gate-0"))
			flaky := "http://flaky.demo.svc.cluster.local:8080"
			every(time.Second, func() {
				for range 60 {
					getBody(c, flaky+"/fail")
					getBody(c, flaky+"/a/x")
				}
				for range 30 {
					getBody(c, flaky+"/id")
					getBody(c, flaky+"/a")
					time.Sleep(100 * time.Millisecond)
				}
				getBody(c, flaky+"/slow")
			})
		case "certify":
			// A Certify with a token the controller never signed.
			ctl := grafanaControllerOf(t, m)
			id := grafanaIdentity(t, m, []byte("not-a-join-token"))
			every(5*time.Second, func() {
				conn, err := ctl.dial(proxyidentity.ControllerTLS(id.Anchors, ctl.id))
				if err != nil {
					return
				}
				defer conn.Close()
				local, err := proxyidentity.New(id.config(conn))
				if err != nil {
					return
				}
				runCtx, stop := context.WithTimeout(ctx, 3*time.Second)
				defer stop()
				_ = local.Run(runCtx)
			})
		case "inbound-stream":
			// stranger's certificate asking for gate's inbound policy.
			ctl := grafanaControllerOf(t, m)
			local := grafanaCertified(t, m, ctl)
			every(5*time.Second, func() {
				conn, err := ctl.dial(local.ClientTLS(ctl.id, []string{"h2"}))
				if err != nil {
					return
				}
				defer conn.Close()
				sctx, stop := context.WithTimeout(ctx, 5*time.Second)
				defer stop()
				if s, err := policypb.NewPolicyClient(conn).WatchInbound(sctx, &policypb.InboundRequest{Namespace: "demo", Pod: "gate-0", Workload: "gate", Port: 8080}); err == nil {
					s.Recv()
				}
			})
		default:
			t.Fatalf("no feed %q", feed)
		}
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, l := range loops {
		wg.Go(func() {
			for ctx.Err() == nil {
				l.f()
				select {
				case <-ctx.Done():
				case <-time.After(l.d):
				}
			}
		})
	}
}

// grafanaStranger is the identity the controller feeds claim: stranger's.
const grafanaStranger = "spiffe://cluster.local/ns/demo/sa/stranger"

// grafanaCtl is skein up's controller, dialled from its own host.
type grafanaCtl struct {
	host *netns.Host
	addr string
	id   spiffeid.ID
}

func grafanaControllerOf(t *testing.T, m *upMesh) grafanaCtl {
	t.Helper()
	h := m.pod(t, "skein-controller")
	return grafanaCtl{h, net.JoinHostPort(hostIP(t, h), fmt.Sprint(portCtlGRPC)), spiffeid.RequireFromString(controllerID)}
}

func (c grafanaCtl) dial(cfg *tls.Config) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+c.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return c.host.DialContext(ctx, "tcp", addr) }))
}

// grafanaID is what a proxy identity for stranger needs but its
// connection to the controller.
type grafanaID struct {
	TokenFile string
	Anchors   []*x509.Certificate
}

// grafanaIdentity writes token to a file for a proxy identity for
// stranger.
func grafanaIdentity(t *testing.T, m *upMesh, token []byte) grafanaID {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, token, 0o600); err != nil {
		t.Fatal(err)
	}
	return grafanaID{tokenFile, readAnchors(t, filepath.Join(m.stateDir, "identity", "ca.crt"))}
}

func (g grafanaID) config(conn *grpc.ClientConn) proxyidentity.Config {
	return proxyidentity.Config{
		Identity: grafanaStranger, TokenFile: g.TokenFile, TrustAnchors: g.Anchors,
		Client: identitypb.NewIdentityClient(conn), Log: slog.New(slog.DiscardHandler),
	}
}

// grafanaCertified is a certified identity for stranger, with a join
// token the test signs with skein up's key, as skein up signs its
// proxies'.
func grafanaCertified(t *testing.T, m *upMesh, ctl grafanaCtl) *proxyidentity.Local {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	token, err := skein(ctx, "identity", "token", "--key", filepath.Join(m.stateDir, "identity", "join-token.key"), "--identity", grafanaStranger, "--ttl", "1h")
	if err != nil {
		t.Fatal(err)
	}
	id := grafanaIdentity(t, m, []byte(strings.TrimSpace(token)))
	conn, err := ctl.dial(proxyidentity.ControllerTLS(id.Anchors, ctl.id))
	if err != nil {
		t.Fatal(err)
	}
	local, err := proxyidentity.New(id.config(conn))
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = local.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done; conn.Close() })
	for local.Ready() != nil {
		if ctx.Err() != nil {
			t.Fatalf("certifying %s: %v", grafanaStranger, local.Ready())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return local
}
