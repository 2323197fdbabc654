package check_test

import (
	"context"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/controller/inject"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/install/check"
	"github.com/skeinmesh/skein/internal/pki"
)

// meshed is a fake cluster with Skein installed, a namespace "shop"
// annotated for injection and "default" not.
type meshed struct {
	t      *testing.T
	client *fake.Clientset
	inject inject.Config // what the installed injector adds
}

func newMeshed(t *testing.T) *meshed {
	client := installed(t)
	secret, err := client.CoreV1().Secrets("skein").Get(context.Background(), install.IssuerSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := inject.DefaultConfig()
	cfg.ProxyImage = install.Default().ProxyImage
	cfg.TrustAnchorsPEM = string(secret.Data[identity.TrustAnchorFile])
	cfg.ControllerAddr = install.ControllerAddr("skein")
	m := &meshed{t: t, client: client, inject: cfg}
	// Every controller pod reports its proxies all on the one anchor.
	m.serveTrust(trustGauges(1, anchorCount{m.issuerFingerprint(), true, 1, 1}))
	m.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Annotations: map[string]string{inject.AnnotationInject: inject.InjectEnabled}}})
	m.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}})
	return m
}

func (m *meshed) create(obj any) {
	m.t.Helper()
	var err error
	switch o := obj.(type) {
	case *corev1.Namespace:
		_, err = m.client.CoreV1().Namespaces().Create(context.Background(), o, metav1.CreateOptions{})
	case *corev1.Pod:
		_, err = m.client.CoreV1().Pods(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
	}
	if err != nil {
		m.t.Fatal(err)
	}
}

// deploymentPod is a running pod of Deployment name, not injected.
func deploymentPod(ns, name, suffix string) *corev1.Pod {
	controller := true
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name + "-5d8f9-" + suffix, Namespace: ns,
			Labels:          map[string]string{"app": name, "pod-template-hash": "5d8f9"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: name + "-5d8f9", Controller: &controller}},
		},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

// injected returns pod as the injector made it, with the proxy's status:
// ready, or waiting for reason.
func (m *meshed) injected(pod *corev1.Pod, cfg inject.Config, waiting string) *corev1.Pod {
	m.t.Helper()
	asks := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: pod.Namespace, Annotations: map[string]string{inject.AnnotationInject: inject.InjectEnabled}}}
	out, ok, err := inject.Inject(pod, asks, cfg)
	if err != nil || !ok {
		m.t.Fatalf("injecting %s: injected %v, %v", pod.Name, ok, err)
	}
	status := corev1.ContainerStatus{Name: inject.ProxyContainerName, Ready: waiting == "",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	if waiting != "" {
		status.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting}}
	}
	out.Status.InitContainerStatuses = []corev1.ContainerStatus{status}
	return out
}

func (m *meshed) check(namespace string) string {
	m.t.Helper()
	c := &check.Checker{Client: m.client, Namespace: "skein", Admin: fakeAdmin{}}
	return output(c.DataPlane(context.Background(), namespace))
}

func requireLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in\n%s", w, out)
		}
	}
}

func TestDataPlanePassesWhenEveryPodThatAsksHasAReadyProxy(t *testing.T) {
	m := newMeshed(t)
	m.create(m.injected(deploymentPod("shop", "web", "a"), m.inject, ""))
	m.create(deploymentPod("default", "plain", "a")) // asks for nothing
	optOut := deploymentPod("shop", "batch", "a")
	optOut.Annotations = map[string]string{inject.AnnotationInject: inject.InjectDisabled}
	m.create(optOut)
	hostNet := deploymentPod("shop", "node-agent", "a")
	hostNet.Spec.HostNetwork = true
	m.create(hostNet)
	done := deploymentPod("shop", "job", "a")
	done.Status.Phase = corev1.PodSucceeded
	m.create(done)

	out := m.check("")
	requireLines(t, out,
		"[ok] pods that ask for injection have a proxy\n",
		"[ok] meshed pods' proxies are ready\n",
		"[ok] meshed pods were injected with one of the issuer's anchors\n",
		"[ok] meshed proxies find this controller\n",
		"[ok] meshed proxies run the injector's image\n")
	if strings.Contains(out, "FAIL") || strings.Contains(out, "warn") {
		t.Errorf("a healthy data plane has problems:\n%s", out)
	}
}

func TestDataPlaneFindsPodsCreatedWhileTheInjectorWasDown(t *testing.T) {
	m := newMeshed(t)
	m.create(m.injected(deploymentPod("shop", "web", "a"), m.inject, ""))
	m.create(deploymentPod("shop", "web", "b")) // created during an outage
	bare := deploymentPod("shop", "bare", "x")
	bare.OwnerReferences = nil
	m.create(bare)

	out := m.check("shop")
	requireLines(t, out,
		"[FAIL] pods that ask for injection have a proxy: no proxy in shop/bare-5d8f9-x, shop/web-5d8f9-b\n",
		"kubectl -n shop delete pod bare-5d8f9-x, then create it again")
	// The Deployment's pod gets the rollout hint when it is the first one.
	m = newMeshed(t)
	m.create(deploymentPod("shop", "web", "b"))
	requireLines(t, m.check(""), "hint: they were created while the injector did not answer", "kubectl -n shop rollout restart deployment web\n")
}

func TestDataPlaneNamesUnreadyProxies(t *testing.T) {
	m := newMeshed(t)
	m.create(m.injected(deploymentPod("shop", "web", "a"), m.inject, "CrashLoopBackOff"))
	m.create(m.injected(deploymentPod("shop", "web", "b"), m.inject, ""))
	out := m.check("")
	requireLines(t, out,
		"[FAIL] meshed pods' proxies are ready: not ready: shop/web-5d8f9-a (CrashLoopBackOff)\n",
		"hint: kubectl -n shop logs web-5d8f9-a -c skein-proxy")
}

func TestDataPlaneFindsProxiesInjectedWithAnotherAnchor(t *testing.T) {
	m := newMeshed(t)
	old := m.inject
	anchor, _ := identitytest.NewAnchor(t, spiffeid.RequireTrustDomainFromString("cluster.local"))
	old.TrustAnchorsPEM = string(pki.EncodeCertificates(anchor))
	m.create(m.injected(deploymentPod("shop", "web", "a"), old, ""))
	m.create(m.injected(deploymentPod("shop", "api", "a"), m.inject, ""))
	out := m.check("")
	requireLines(t, out,
		"[warn] meshed pods were injected with one of the issuer's anchors: injected with anchors the mesh no longer has: shop/web-5d8f9-a\n",
		"kubectl -n shop rollout restart deployment web")

	// A bundle that holds the old anchor and the new one (a rotation in
	// progress) is fine.
	m = newMeshed(t)
	both := m.inject
	both.TrustAnchorsPEM = old.TrustAnchorsPEM + m.inject.TrustAnchorsPEM
	m.create(m.injected(deploymentPod("shop", "web", "a"), both, ""))
	requireLines(t, m.check(""), "[ok] meshed pods were injected with one of the issuer's anchors\n")
}

// Proxies injected for another install's namespace, or before the
// controller's identity was handed to them (they expect the workload
// ns/skein/sa/skein-controller), cannot talk to this controller.
func TestDataPlaneFindsProxiesThatExpectAnotherController(t *testing.T) {
	m := newMeshed(t)
	elsewhere := m.inject
	elsewhere.ControllerAddr = install.ControllerAddr("mesh")
	m.create(m.injected(deploymentPod("shop", "web", "a"), elsewhere, ""))
	old := m.injected(deploymentPod("shop", "api", "a"), m.inject, "")
	proxy, _ := inject.Proxy(old)
	for i := range proxy.Env {
		if proxy.Env[i].Name == "SKEIN_PROXY_CONTROLLER_ID" {
			proxy.Env = append(proxy.Env[:i], proxy.Env[i+1:]...)
			break
		}
	}
	m.create(old)
	m.create(m.injected(deploymentPod("shop", "cart", "a"), m.inject, ""))
	requireLines(t, m.check(""),
		"[FAIL] meshed proxies find this controller: proxies of shop/api-5d8f9-a (expects the controller as ns/skein/sa/skein-controller), shop/web-5d8f9-a (dials skein-controller.mesh.svc.cluster.local:8086)\n",
		"kubectl -n shop rollout restart deployment api")
}

func TestDataPlaneWarnsOfProxiesOnAnotherImage(t *testing.T) {
	m := newMeshed(t)
	old := m.inject
	old.ProxyImage = "ghcr.io/skeinmesh/skein-proxy:v0.9"
	m.create(m.injected(deploymentPod("shop", "web", "a"), old, ""))
	mirrored := m.inject
	mirrored.ProxyImage = "mirror.example:5000/skein-proxy:dev" // the same version from another registry
	m.create(m.injected(deploymentPod("shop", "api", "a"), mirrored, ""))
	out := m.check("")
	requireLines(t, out,
		"[warn] meshed proxies run the injector's image: the injector adds "+install.Default().ProxyImage+" (version dev); proxies on another version or image: shop/api-5d8f9-a (mirror.example:5000/skein-proxy:dev), shop/web-5d8f9-a (v0.9)\n",
		"hint: roll them onto the controller's version (they keep working meanwhile): kubectl -n shop rollout restart deployment api; kubectl -n shop rollout restart deployment web\n")
	if strings.Contains(out, "FAIL") {
		t.Errorf("another image alone is not a failure:\n%s", out)
	}
}

func TestDataPlaneWarnsWhenNothingIsMeshed(t *testing.T) {
	m := newMeshed(t)
	m.create(deploymentPod("default", "plain", "a"))
	requireLines(t, m.check("default"), "[warn] meshed pods' proxies are ready: no meshed pods in namespace default\n", "skein.io/inject=enabled")
	requireLines(t, m.check("nowhere"), "[FAIL] meshed pods can be listed")
}

func TestDataPlaneListsAtMostFivePods(t *testing.T) {
	m := newMeshed(t)
	for _, s := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		m.create(deploymentPod("shop", "web", s))
	}
	requireLines(t, m.check(""), "shop/web-5d8f9-e and 2 more\n")
}
