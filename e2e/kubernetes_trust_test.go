package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	controlleridentity "github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/inject"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/install/installed"
)

// The images `skein upgrade` moves to in TestKubernetes: another version
// of the same binaries (the stand-in kubelet maps both).
const (
	upgradedControllerImage = "ghcr.io/skeinmesh/skein-controller:v2"
	upgradedProxyImage      = "ghcr.io/skeinmesh/skein-proxy:v2"
)

// installFlags are the flags TestKubernetes installs with.
var installFlags = []string{"--namespace", controlNamespace, "--trust-domain", kubeTrustDomain, "--replicas", "2", "--grafana-dashboards"}

// anchorFingerprint is the fingerprint of the issuer Secret's trust anchors.
func (k *kube) anchorFingerprint() string {
	k.t.Helper()
	secret, err := k.c.Client.CoreV1().Secrets(controlNamespace).Get(k.t.Context(), install.IssuerSecretName, metav1.GetOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	return installed.Fingerprints(secret.Data[controlleridentity.TrustAnchorFile])
}

// skein runs the CLI against the test cluster and returns its standard
// output; its standard error is logged.
func (k *kube) skein(stdin string, args ...string) string {
	k.t.Helper()
	out, err := k.trySkein(stdin, args...)
	if err != nil {
		k.t.Fatalf("skein %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// trySkein runs the CLI against the test cluster and returns its standard
// output and its error, with its standard error in it.
func (k *kube) trySkein(stdin string, args ...string) (string, error) {
	args = append(args, "--kubeconfig", k.c.Kubeconfig)
	cmd := k.c.Host.Command(k.t.Context(), filepath.Join(binDir, "skein"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if exit, ok := err.(*exec.ExitError); ok {
		err = fmt.Errorf("%w: %s", err, exit.Stderr)
	}
	return string(out), err
}

// testInstallAgain applies `skein install` a second time and proves every
// proxy still works: the anchor is the same, and a greeter recreated
// afterwards (injected with the anchors and holding a certificate of the
// issuer in the cluster now) answers the client injected before, with no
// call failing. New trust (the old behaviour, or --offline) fails here:
// the old client refuses the new greeter's certificate.
func (k *kube) testInstallAgain(t *testing.T, client corev1.Pod) {
	before := k.anchorFingerprint()
	failuresBefore := k.clientReport(client).Failures
	k.kubectl([]byte(k.skein("", append([]string{"install"}, installFlags...)...)), "apply", "-f", "-")
	if after := k.anchorFingerprint(); after != before {
		t.Errorf("the trust anchor changed with the second install: %s, then %s", before, after)
	}
	// One more greeter, made after the install: scaling rather than
	// deleting, so that no call is cut off by a pod going away.
	d, err := k.c.Client.AppsV1().Deployments(shopNamespace).Get(t.Context(), "greeter", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	replicas := int(*d.Spec.Replicas)
	old := map[string]bool{}
	for _, p := range k.waitForReadyPods(shopNamespace, "app=greeter", replicas) {
		old[p.Name] = true
	}
	k.kubectl(nil, "-n", shopNamespace, "scale", "deployment/greeter", fmt.Sprintf("--replicas=%d", replicas+1))
	var fresh string
	for _, p := range k.waitForReadyPods(shopNamespace, "app=greeter", replicas+1) {
		if old[p.Name] {
			continue
		}
		fresh = p.Name
		// Injected (the webhook's certificate kept: a new one fails open
		// until the controller serves it) with the anchors of before.
		proxy, _ := inject.Proxy(&p)
		if proxy == nil {
			t.Fatalf("the greeter %s made after the second install has no proxy: the webhook failed open", p.Name)
		}
		if got := installed.Fingerprints([]byte(inject.TrustAnchorsPEM(proxy))); got != before {
			t.Errorf("the greeter made after the second install was injected with anchors %s, want %s", got, before)
		}
	}
	k.waitFor("the greeter made after the second install to answer the client", 30*time.Second, func() error {
		if calls := k.clientReport(client).Calls; calls[fresh] == 0 {
			return fmt.Errorf("%s has answered no call (calls %v)", fresh, calls)
		}
		return nil
	})
	window := k.callsOver(client, 5*time.Second)
	t.Logf("after the second install, with %s new: calls %v", fresh, window.Calls)
	if window.Calls[fresh] == 0 {
		t.Errorf("the greeter made after the second install answered no call in 5 s: %v", window.Calls)
	}
	if failed := k.clientReport(client).Failures - failuresBefore; failed > 0 {
		t.Errorf("%d calls failed across the second install", failed)
	}
}

// testUpgrade upgrades to new images and a debug log level under the
// client's 50 calls a second: the controllers roll, the anchor stays, and
// no call fails.
func (k *kube) testUpgrade(t *testing.T, client corev1.Pod) {
	manifests := k.skein("", "upgrade", "--controller-log-level", "debug", "--controller-image", upgradedControllerImage, "--proxy-image", upgradedProxyImage)
	k.rollControllersUnderLoad(t, client, "skein upgrade", func() { k.kubectl([]byte(manifests), "apply", "-f", "-") })
	d, err := k.c.Client.AppsV1().Deployments(controlNamespace).Get(t.Context(), install.ControllerName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if args := strings.Join(c.Args, " "); !strings.Contains(args, "-log-level debug") || !strings.Contains(args, "-trust-domain "+kubeTrustDomain) {
		t.Errorf("controller args after the upgrade: %s", args)
	}
	if *d.Spec.Replicas != 2 || c.Image != upgradedControllerImage || c.Env[0].Value != upgradedProxyImage {
		t.Errorf("after the upgrade: %d replicas, image %s, proxy image %v; want the recorded 2 and the new images", *d.Spec.Replicas, c.Image, c.Env)
	}
	if _, err := k.c.Client.CoreV1().ConfigMaps(controlNamespace).Get(t.Context(), install.GrafanaDashboardsConfigMapName, metav1.GetOptions{}); err != nil {
		t.Errorf("the recorded --grafana-dashboards was lost: %v", err)
	}
}

// testInjectReadsTheInstalledMesh runs `skein inject` with no flag but the
// kubeconfig: the proxy gets the installed anchors, image and controller.
func (k *kube) testInjectReadsTheInstalledMesh(t *testing.T) {
	const web = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: ` + testappImage + `}]}
`
	var d appsv1.Deployment
	if err := yaml.Unmarshal([]byte(k.skein(web, "inject")), &d); err != nil {
		t.Fatal(err)
	}
	proxy, _ := inject.Proxy(&corev1.Pod{Spec: d.Spec.Template.Spec})
	if proxy == nil {
		t.Fatalf("skein inject added no proxy: %+v", d.Spec.Template.Spec)
	}
	if got, want := installed.Fingerprints([]byte(inject.TrustAnchorsPEM(proxy))), k.anchorFingerprint(); got != want {
		t.Errorf("injected anchors %s, want the installed %s", got, want)
	}
	if addr, _ := inject.ControllerOf(proxy); addr != install.ControllerAddr(controlNamespace) {
		t.Errorf("the proxy dials %s, want the controller in %s", addr, controlNamespace)
	}
	if proxy.Image != upgradedProxyImage {
		t.Errorf("proxy image %s, want the installed injector's %s", proxy.Image, upgradedProxyImage)
	}
	// Without a cluster, it says what it needs.
	cmd := k.c.Host.Command(t.Context(), filepath.Join(binDir, "skein"), "inject", "--kubeconfig", filepath.Join(t.TempDir(), "none"))
	cmd.Stdin = strings.NewReader(web)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "give --trust-anchors") {
		t.Errorf("skein inject with no cluster (error %v) does not ask for --trust-anchors:\n%s", err, out)
	}
}

// testCheckNamesOldProxies: after the upgrade the greeters still run the
// old proxy; `skein check --proxy` (finding the install's namespace on
// its own) names them and says how to roll them, and once rolled the
// warning is gone.
func (k *kube) testCheckNamesOldProxies(t *testing.T, client corev1.Pod) {
	check := func() string {
		cmd := k.c.Host.Command(t.Context(), filepath.Join(binDir, "skein"), "check", "--proxy", "--proxy-namespace", shopNamespace, "--kubeconfig", k.c.Kubeconfig)
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	out := check()
	for _, want := range []string{"[warn] meshed proxies run the injector's image: the injector adds " + upgradedProxyImage + " (version v2)", "(dev)", "kubectl -n shop rollout restart deployment greeter"} {
		if !strings.Contains(out, want) {
			t.Errorf("skein check --proxy does not say %q:\n%s", want, out)
		}
	}
	failuresBefore := k.clientReport(client).Failures
	began := time.Now()
	k.kubectl(nil, "-n", shopNamespace, "rollout", "restart", "deployment/greeter")
	k.kubectl(nil, "-n", shopNamespace, "rollout", "status", "deployment/greeter", "--timeout=120s")
	k.waitFor("the check to pass with the greeters rolled", 60*time.Second, func() error {
		if out := check(); strings.Contains(out, "greeter") {
			return fmt.Errorf("skein check --proxy still names a greeter:\n%s", out)
		}
		return nil
	})
	// The greeters' pods go away under the client's calls: that some fail
	// is about how pods end (not the trust, which the rolled greeters
	// share, nor the check), so it is logged, not asserted.
	t.Logf("greeters rolled onto %s in %v: %d of the client's calls failed meanwhile", upgradedProxyImage, time.Since(began).Round(time.Millisecond), k.clientReport(client).Failures-failuresBefore)
}

// rollControllersUnderLoad runs change, which rolls the controllers, and
// proves that under the client's 50 calls a second no call failed, at
// least half of them were made, the disruption budget held and the trust
// anchor stayed.
func (k *kube) rollControllersUnderLoad(t *testing.T, client corev1.Pod, what string, change func()) {
	before := k.anchorFingerprint()
	start := k.clientReport(client)
	// The fewest controllers available while they roll: the rollout keeps
	// the disruption budget's (all but one of two) and more.
	fewest := make(chan int32, 1)
	stop := make(chan struct{})
	stopWatching := sync.OnceFunc(func() { close(stop) })
	defer stopWatching() // also when a kubectl below ends the test
	go func() {
		least := int32(2)
		for {
			d, err := k.c.Client.AppsV1().Deployments(controlNamespace).Get(t.Context(), install.ControllerName, metav1.GetOptions{})
			if err == nil && d.Status.AvailableReplicas < least {
				least = d.Status.AvailableReplicas
			}
			select {
			case <-stop:
				fewest <- least
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	began := time.Now()
	change()
	k.kubectl(nil, "-n", controlNamespace, "rollout", "status", "deployment/"+install.ControllerName, "--timeout=120s")
	rolled := time.Since(began)
	stopWatching()
	if least := <-fewest; least < 1 {
		t.Errorf("%d controllers available at one point of the rollout, want at least 1 (the disruption budget)", least)
	} else {
		t.Logf("at least %d of 2 controllers available throughout the rollout", least)
	}
	time.Sleep(5 * time.Second) // calls on the rolled controllers
	end := k.clientReport(client)
	calls := 0
	for name, n := range end.Calls {
		calls += n - start.Calls[name]
	}
	elapsed := time.Since(began)
	t.Logf("%s: controllers rolled in %v; %d calls in %v (%.0f/s), %d failed", what, rolled.Round(time.Millisecond), calls, elapsed.Round(time.Millisecond), float64(calls)/elapsed.Seconds(), end.Failures-start.Failures)
	if failed := end.Failures - start.Failures; failed > 0 {
		t.Errorf("%d calls failed during %s", failed, what)
	}
	if want := int(elapsed.Seconds() * 50 / 2); calls < want {
		t.Errorf("%d calls in %v, want at least %d (half the client's 50/s)", calls, elapsed, want)
	}
	if after := k.anchorFingerprint(); after != before {
		t.Errorf("the trust anchor changed with %s: %s, then %s", what, before, after)
	}
}
