package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/testenv"
	"github.com/skeinmesh/skein/internal/testenv/cluster"
)

// gatewayAPICheck is the line of `skein check` about the Gateway API CRDs.
const gatewayAPICheck = "Gateway API routes (HTTPRoute, GRPCRoute)"

var gatewayCRDs = []string{"crd/httproutes.gateway.networking.k8s.io", "crd/grpcroutes.gateway.networking.k8s.io"}

// TestKubernetesGatewayAPI installs Skein into a real API server without
// the Gateway API CRDs, then with them, and checks what a user sees:
// `skein check` (before and after the install) warns that they are missing
// and names the bundle once they serve; `skein install` renders them only
// with --gateway-api-crds, and its output applied with plain `kubectl
// apply` creates them; a controller running as the installed service
// account (so under the ClusterRole skein install renders) is ready
// without them, logs once that it reads no routes, reads them without a
// restart once they are there, and a controller started after them syncs
// its route informers (it is not ready until they have listed).
// There is no kubelet: the controllers run as processes beside the API
// server.
func TestKubernetesGatewayAPI(t *testing.T) {
	requireRoot(t)
	network := testenv.NewNetwork(t)
	c := cluster.Start(t, network)
	k := &kube{t: t, c: c, podDir: t.TempDir()}
	skein := filepath.Join(binDir, "skein")

	out, _ := k.check("--pre")
	if want := "[warn] " + gatewayAPICheck + ": not installed"; !strings.Contains(out, want) {
		t.Errorf("skein check --pre without the CRDs: missing %q in\n%s", want, out)
	}
	if want := "hint: Skein reads routes from the Gateway API CRDs the cluster has; to add them: skein install --gateway-api-crds | kubectl apply -f - (v1.6.3, standard channel)"; !strings.Contains(out, want) {
		t.Errorf("skein check --pre: missing %q in\n%s", want, out)
	}

	manifests := k.run(nil, skein, "install", "--namespace", controlNamespace)
	if strings.Contains(manifests, "name: httproutes.gateway.networking.k8s.io") {
		t.Error("skein install without --gateway-api-crds renders the HTTPRoute CRD")
	}
	k.kubectl([]byte(manifests), "apply", "-f", "-")
	if out, err := k.c.Kubectl(t.Context(), "get", gatewayCRDs[0]).CombinedOutput(); err == nil || !strings.Contains(string(out), "NotFound") {
		t.Errorf("kubectl get %s after skein install without the flag: %v\n%s", gatewayCRDs[0], err, out)
	}
	out, _ = k.check()
	if want := "[warn] " + gatewayAPICheck + ": not installed"; !strings.Contains(out, want) {
		t.Errorf("skein check without the CRDs: missing %q in\n%s", want, out)
	}

	m := &mesh{net: network, dir: readableDir(t)}
	t.Cleanup(func() {
		for _, p := range m.procs {
			p.stop()
		}
	})
	t.Cleanup(func() { m.dumpLogs(t) })
	kubeconfig := k.controllerKubeconfig(m.dir)
	identityDir := filepath.Join(m.dir, "identity")
	k.run(nil, skein, "identity", "generate", "--out", identityDir)
	early := k.startController(m, "controller-early", kubeconfig, identityDir, 18086)
	if log := early.tail(200); !strings.Contains(log, "not reading HTTPRoutes yet") || !strings.Contains(log, "not reading GRPCRoutes yet") {
		t.Errorf("the controller started without the CRDs does not say it reads no routes:\n%s", log)
	}

	start := time.Now()
	withCRDs := k.run(nil, skein, "install", "--namespace", controlNamespace, "--gateway-api-crds")
	k.kubectl([]byte(withCRDs), "apply", "-f", "-")
	k.kubectl(nil, append([]string{"wait", "--for=condition=Established", "--timeout=60s"}, gatewayCRDs...)...)
	out, _ = k.check()
	if want := "[ok] " + gatewayAPICheck + ": bundle v1.6.3 (standard); HTTPRoute and GRPCRoute serve v1"; !strings.Contains(out, want) {
		t.Errorf("skein check with the CRDs: missing %q in\n%s", want, out)
	}

	// The controller looks again every 30 s.
	k.waitFor("the early controller to read routes", 45*time.Second, func() error {
		log := early.tail(200)
		for _, kind := range []string{"HTTPRoutes", "GRPCRoutes"} {
			if !strings.Contains(log, "reading "+kind+": the cluster serves them now") {
				return fmt.Errorf("no word of %s:\n%s", kind, log)
			}
		}
		return nil
	})
	t.Logf("the running controller reads routes %v after the CRDs were applied", time.Since(start).Round(time.Millisecond))
	if log := early.tail(200); strings.Count(log, "not reading HTTPRoutes yet") != 1 || strings.Contains(log, "forbidden") {
		t.Errorf("the early controller's log:\n%s", log)
	}
	late := k.startController(m, "controller-late", kubeconfig, identityDir, 28086)
	if log := late.tail(200); strings.Contains(log, "not reading") || strings.Contains(log, "forbidden") {
		t.Errorf("the controller started with the CRDs:\n%s", log)
	}

	t.Run("RoutesFromKubectlReachTheController", func(t *testing.T) {
		k := k.with(t)
		k.routesReachTheController(map[string]*proc{"early": early, "late": late})
	})
}

// routeManifests are a Service and an HTTPRoute to it whose one backend
// is the given Service.
func routeManifests(backend string) string {
	return `
apiVersion: v1
kind: Namespace
metadata: {name: routes}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: routes}
spec:
  ports: [{name: http, port: 80}]
  selector: {app: web}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-split, namespace: routes}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - backendRefs: [{name: ` + backend + `, port: 80}]
`
}

// routesReachTheController creates, changes and deletes an HTTPRoute with
// kubectl and watches each controller's policy compiler see it: a route
// to a Service that does not exist is refused by name in the log and
// counted by skein_policy_invalid_objects on /metrics, the same route
// changed to a real backend is no longer, and so is the bad one deleted.
func (k *kube) routesReachTheController(controllers map[string]*proc) {
	k.t.Helper()
	invalid := func(want int) {
		k.t.Helper()
		for name, p := range controllers {
			admin := controllerAdmin(p)
			k.waitFor(fmt.Sprintf("controller %s's skein_policy_invalid_objects to be %d", name, want), 30*time.Second, func() error {
				resp, err := httpClient(k.c.Host).Get("http://" + admin + "/metrics")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				if line := fmt.Sprintf("skein_policy_invalid_objects %d\n", want); !strings.Contains(string(body), line) {
					return fmt.Errorf("no %q on /metrics", strings.TrimSpace(line))
				}
				return nil
			})
		}
	}
	logSays := func(what string, count int) {
		k.t.Helper()
		for name, p := range controllers {
			k.waitFor(fmt.Sprintf("controller %s to log %q %d times", name, what, count), 30*time.Second, func() error {
				if n := strings.Count(p.tail(500), what); n != count {
					return fmt.Errorf("%d times:\n%s", n, p.tail(20))
				}
				return nil
			})
		}
	}
	// As the JSON log says them: the refusal's error, not the "was" of
	// the line that says it is resolved.
	const refused = `"err":"HTTPRoute routes/web-split: spec.rules[0].backendRefs[0]: Service routes/missing not found"`
	const resolved = `"msg":"policy problem resolved"`

	k.kubectl([]byte(routeManifests("missing")), "apply", "-f", "-")
	invalid(1)
	logSays(refused, 1)
	k.kubectl([]byte(routeManifests("web")), "apply", "-f", "-")
	invalid(0)
	logSays(resolved, 1)
	k.kubectl([]byte(routeManifests("missing")), "apply", "-f", "-")
	invalid(1)
	logSays(refused, 2)
	k.kubectl(nil, "-n", "routes", "delete", "httproute/web-split")
	invalid(0)
	logSays(resolved, 2)
}

// controllerKubeconfig writes a kubeconfig that authenticates as the
// installed controller's service account, with a token from the API
// server.
func (k *kube) controllerKubeconfig(dir string) string {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(k.t.Context(), time.Minute)
	defer cancel()
	expiry := int64(3600)
	resp, err := k.c.Client.CoreV1().ServiceAccounts(controlNamespace).CreateToken(ctx, install.ControllerName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}, // the API server's own audience
	}, metav1.CreateOptions{})
	if err != nil {
		k.t.Fatalf("requesting a token for the controller: %v", err)
	}
	token := resp.Status.Token
	path := filepath.Join(dir, "controller.kubeconfig")
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: controller, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: controller}}]
current-context: test
`, k.c.Server, k.c.CAFile, token)
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		k.t.Fatal(err)
	}
	return path
}

// controllerAdmin is the admin address startController gave p.
func controllerAdmin(p *proc) string {
	args := p.cmd.Args
	for i, a := range args {
		if a == "-admin-addr" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// startController runs skein-controller beside the API server as the
// installed service account, reading the cluster, on grpcPort and the
// admin port after it, and waits until it is ready (its source synced).
func (k *kube) startController(m *mesh, name, kubeconfig, identityDir string, grpcPort int) *proc {
	k.t.Helper()
	admin := fmt.Sprintf("127.0.0.1:%d", grpcPort+1)
	p, err := m.start(name, k.c.Host.Command(context.Background(), filepath.Join(binDir, "skein-controller"),
		"-kubernetes", "-kubeconfig", kubeconfig, "-identity-dir", identityDir,
		"-grpc-addr", fmt.Sprintf("127.0.0.1:%d", grpcPort), "-admin-addr", admin))
	if err != nil {
		k.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(k.t.Context(), time.Minute)
	defer cancel()
	if err := waitReady(ctx, k.c.Host, p, "http://"+admin+"/ready"); err != nil {
		k.t.Fatalf("%s not ready: %v\n%s", name, err, p.tail(50))
	}
	return p
}
