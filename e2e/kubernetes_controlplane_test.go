package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/internal/controller/inject"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/netns"
	"github.com/skeinmesh/skein/internal/testenv"
)

// oldControllerSPIFFE is the identity the controller had before it moved
// under /skein/: a workload identity anyone owning namespace skein gets.
const oldControllerSPIFFE = "spiffe://" + kubeTrustDomain + "/ns/skein/sa/skein-controller"

// checkProxiesFindTheController checks that an injected pod's proxy is
// told the controller's Service in the install namespace and the
// control plane's identity.
func (k *kube) checkProxiesFindTheController(t *testing.T, pod corev1.Pod) {
	env := map[string]string{}
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.Name == inject.ProxyContainerName {
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
		}
	}
	for name, want := range map[string]string{
		"SKEIN_PROXY_CONTROLLER_ADDR": install.ControllerAddr(controlNamespace),
		"SKEIN_PROXY_CONTROLLER_ID":   "spiffe://" + kubeTrustDomain + "/skein/controller",
	} {
		if env[name] != want {
			t.Errorf("pod %s: proxy %s = %q, want %q", pod.Name, name, env[name], want)
		}
	}
	if want := "skein-controller." + controlNamespace + ".svc.cluster.local:8086"; install.ControllerAddr(controlNamespace) != want {
		t.Errorf("install.ControllerAddr = %s, want %s", install.ControllerAddr(controlNamespace), want)
	}
}

// testControllerImpostor plays whoever creates namespace skein with a
// service account skein-controller, as a pod there would: with that
// account's projected-style token it asks for the controller's identity
// (refused), gets the old controller identity (a workload's), serves it as
// a controller, and a real skein-proxy pointed at it refuses the handshake
// before it sends its token.
func (k *kube) testControllerImpostor(t *testing.T, network *netns.Network) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	k.kubectl([]byte(`
apiVersion: v1
kind: Namespace
metadata: {name: skein}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: skein-controller, namespace: skein}
`), "apply", "-f", "-")
	token := k.token(ctx, "skein", "skein-controller")
	anchors, addr, controller := k.identityService(ctx, t)
	err := certify(ctx, t, k.tester, addr, anchors, controller, controller.String(), token)
	if want := "PermissionDenied desc = identity " + controller.String() + " is reserved for the mesh's control plane"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("asking for the controller's identity with skein/skein-controller's token: %v, want %q", err, want)
	}
	pair, err := certifiedPair(ctx, t, k.tester, addr, anchors, controller, oldControllerSPIFFE, token)
	if err != nil {
		t.Fatalf("the workload identity %s was refused to its own service account: %v", oldControllerSPIFFE, err)
	}

	impostor := testenv.AddHost(t, network, "impostor")
	seen := serveImpostor(t, impostor, pair)

	// A proxy with a real token of its own, told to find its controller
	// at the impostor, as it would be by DNS or a hijacked Service.
	m := &mesh{net: network, dir: readableDir(t)}
	t.Cleanup(func() {
		for _, p := range m.procs {
			p.stop()
		}
	})
	t.Cleanup(func() { m.dumpLogs(t) })
	tokenFile := filepath.Join(m.dir, "token")
	if err := os.WriteFile(tokenFile, []byte(k.token(ctx, shopNamespace, "client")), 0o644); err != nil {
		t.Fatal(err)
	}
	victim := testenv.AddHost(t, network, "victim")
	proxy, err := m.start("victim-proxy", victim.CommandAs(context.Background(), netns.User{UID: proxyUID, GID: proxyUID},
		filepath.Join(binDir, "skein-proxy"),
		"-controller-addr", impostor.IP.String()+":8086",
		"-identity", clientSPIFFE,
		"-token-file", tokenFile,
		"-trust-anchors", k.writeTrustAnchors(),
		"-log-level", "debug"))
	if err != nil {
		t.Fatal(err)
	}
	k.waitFor("the proxy to try the impostor twice", 30*time.Second, func() error {
		if n := seen.handshakes(); n < 2 {
			return fmt.Errorf("%d handshakes", n)
		}
		return nil
	})
	for _, err := range seen.errors() {
		if !strings.Contains(err, "bad certificate") {
			t.Errorf("a handshake with the impostor ended %q, want the proxy's bad certificate alert", err)
		}
	}
	if n := seen.bytesAfterHandshake(); n > 0 {
		t.Errorf("the impostor received %d bytes after a handshake: the proxy talked to it", n)
	}
	if resp, err := httpClient(victim).Get("http://127.0.0.1:4191/ready"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("the proxy is ready with an impostor as its controller")
		}
	}
	// The refused handshake reaches the log when the certificate request
	// gives up waiting for a connection (10 s), not at the handshake.
	k.waitFor("the proxy to log why it refused the impostor", 30*time.Second, func() error {
		if log := proxy.tail(200); !strings.Contains(log, "unexpected ID") || !strings.Contains(log, oldControllerSPIFFE) {
			return fmt.Errorf("the proxy's log does not say the controller presented %s:\n%s", oldControllerSPIFFE, log)
		}
		return nil
	})
}

// token asks the API server for a token of a service account bound to the
// identity service's audience, as the kubelet projects into a pod.
func (k *kube) token(ctx context.Context, namespace, serviceAccount string) string {
	k.t.Helper()
	expiry := int64(600)
	resp, err := k.c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{inject.TokenAudience}, ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		k.t.Fatalf("requesting a token for %s/%s: %v", namespace, serviceAccount, err)
	}
	return resp.Status.Token
}

// impostorLog is what a TLS server saw of its clients.
type impostorLog struct {
	mu    sync.Mutex
	n     int
	errs  []string
	bytes int
}

func (l *impostorLog) handshakes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *impostorLog) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

func (l *impostorLog) bytesAfterHandshake() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bytes
}

// serveImpostor serves pair over TLS (ALPN h2, as the controller) on port
// 8086 of h, and records every handshake's outcome and any bytes a client
// sends after one.
func serveImpostor(t *testing.T, h *netns.Host, pair tls.Certificate) *impostorLog {
	var ln net.Listener
	if err := h.Enter(func() (err error) {
		ln, err = net.Listen("tcp", ":8086")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	seen := &impostorLog{}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	config := &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13}
	wg.Go(func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer raw.Close()
				raw.SetDeadline(time.Now().Add(5 * time.Second))
				conn := tls.Server(raw, config)
				err := conn.Handshake()
				var n int64
				if err == nil {
					n, _ = io.Copy(io.Discard, conn)
				}
				seen.mu.Lock()
				defer seen.mu.Unlock()
				seen.n++
				if err != nil {
					seen.errs = append(seen.errs, err.Error())
				}
				seen.bytes += int(n)
			})
		}
	})
	return seen
}

const earlyClientManifests = `
apiVersion: v1
kind: ServiceAccount
metadata: {name: early-client, namespace: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: early-client, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: early-client}}
  template:
    metadata: {labels: {app: early-client}}
    spec:
      serviceAccountName: early-client
      containers:
      - name: client
        image: ` + testappImage + `
        args: ["-call", "` + greeterTarget + `", "-rate", "20"]
`

// testStartOrder starts a client whose first call, the moment it starts,
// goes through its proxy to the (ready) greeters: with the proxy's
// startupProbe the kubelet starts it only once the proxy holds its
// certificate, so no call fails and the kubelet's start of the
// application comes after the proxy's certificate.
func (k *kube) testStartOrder(t *testing.T) {
	k.kubectl([]byte(earlyClientManifests), "apply", "-f", "-")
	pod := k.waitForReadyPods(shopNamespace, "app=early-client", 1)[0]
	// Its calls are not part of what the next subtests measure.
	defer k.kubectl(nil, "-n", shopNamespace, "delete", "deployment", "early-client", "--wait=false")
	k.waitFor("the early client's first report", 10*time.Second, func() error {
		if r := k.clientReport(pod); r.reports < 1 {
			return errors.New("not yet")
		}
		return nil
	})
	first := k.clientReport(pod)
	total := 0
	for _, n := range first.Calls {
		total += n
	}
	t.Logf("the early client's first report: %d calls answered, %d failed", total, first.Failures)
	if first.Failures > 0 || total == 0 {
		t.Errorf("the application's first calls: %d answered, %d failed (%v); want none failed", total, first.Failures, first.Failed)
	}

	certAt := firstLogTime(t, filepath.Join(k.podDir, string(pod.UID), inject.ProxyContainerName+".log"), func(line string) bool {
		return strings.Contains(line, `"msg":"certificate updated"`)
	})
	appAt := firstLogTime(t, filepath.Join(k.podDir, "kubelet.log"), func(line string) bool {
		return strings.Contains(line, `msg="container started"`) && strings.Contains(line, "pod="+shopNamespace+"/"+pod.Name+" ") &&
			strings.Contains(line, "container=client ")
	})
	t.Logf("the proxy got its certificate at %s, the application started %v later", certAt.Format(time.StampMilli), appAt.Sub(certAt))
	if !appAt.After(certAt) {
		t.Errorf("the application started at %s, before its proxy held a certificate (%s)", appAt.Format(time.StampMilli), certAt.Format(time.StampMilli))
	}
}

// firstLogTime returns the time of the first line of a log (JSON, or slog
// text with time=) that match accepts.
func firstLogTime(t *testing.T, path string, match func(string) bool) time.Time {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !match(line) {
			continue
		}
		var entry struct {
			Time time.Time `json:"time"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && !entry.Time.IsZero() {
			return entry.Time
		}
		if rest, ok := strings.CutPrefix(line, "time="); ok {
			if at, err := time.Parse(time.RFC3339Nano, strings.Fields(rest)[0]); err == nil {
				return at
			}
		}
		t.Fatalf("%s: no time in %q", path, line)
	}
	t.Fatalf("%s: no matching line", path)
	return time.Time{}
}

// checkControllerPermissions asks the API server's own authorizer
// (SubjectAccessReviews) what the controller's service account may do:
// what its informers and calls use, and nothing more.
func (k *kube) checkControllerPermissions(t *testing.T) {
	user := "system:serviceaccount:" + controlNamespace + ":" + install.ControllerName
	for _, c := range []struct {
		verb, group, resource, namespace, name string
		allowed                                bool
	}{
		{"list", "", "namespaces", "", "", true},
		{"watch", "", "pods", "", "", true},
		{"watch", "skein.io", "workloads", "", "", true},
		{"create", "authentication.k8s.io", "tokenreviews", "", "", true},
		{"get", "", "secrets", controlNamespace, install.IssuerSecretName, true},
		{"watch", "", "secrets", controlNamespace, install.IssuerSecretName, true},
		{"get", "", "namespaces", "", shopNamespace, false}, // the injector's cache only
		{"get", "", "secrets", controlNamespace, install.JoinTokenKeySecretName, false},
		{"list", "", "secrets", controlNamespace, "", false},
		{"get", "", "serviceaccounts", shopNamespace, "client", false},
		{"list", "gateway.networking.k8s.io", "httproutes", "", "", true},
		{"watch", "gateway.networking.k8s.io", "grpcroutes", "", "", true},
		{"update", "gateway.networking.k8s.io", "httproutes", shopNamespace, "", false}, // it writes no route
		{"list", "gateway.networking.k8s.io", "gateways", "", "", false},
		{"watch", "policy.skein.io", "authorizationpolicies", "", "", true},
		{"create", "policy.skein.io", "servers", shopNamespace, "", false},
		{"create", "", "pods", shopNamespace, "", false},
	} {
		review, err := k.c.Client.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   user,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + controlNamespace, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: c.verb, Group: c.group, Resource: c.resource, Namespace: c.namespace, Name: c.name,
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed != c.allowed {
			t.Errorf("the controller may %s %s/%s %s/%s: %t, want %t", c.verb, c.group, c.resource, c.namespace, c.name, review.Status.Allowed, c.allowed)
		}
	}
}
