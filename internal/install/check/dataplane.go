package check

import (
	"cmp"
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/inject"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/pki"
)

// listed is how many pods a result names before it says "and N more".
const listed = 5

// DataPlane checks the pods of the mesh in namespace (every namespace when
// ""): every pod that asks for injection has a proxy, every proxy is
// ready, trusts the issuer's anchor, and runs the image the injector adds
// today. Pods of the control plane's namespace and kube-system, which the
// webhook never sees, and pods that have finished are left out.
func (c *Checker) DataPlane(ctx context.Context, namespace string) []Result {
	const listName = "meshed pods can be listed"
	namespaces, err := c.namespaces(ctx, namespace)
	if err != nil {
		return []Result{failed(listName, "check --kubeconfig and that you may list namespaces and pods", "%v", err)}
	}
	pods, err := c.listPods(ctx, namespace)
	if err != nil {
		return []Result{failed(listName, "check --kubeconfig and that you may list pods", "%v", err)}
	}

	var uninjected, unready, staleTrust, otherImage, otherController podList
	meshed := 0
	anchors, anchorsErr := c.issuerAnchors(ctx)
	image, imageErr := c.injectedImage(ctx)
	for i := range pods {
		pod := &pods[i]
		if c.notMeshable(pod) {
			continue
		}
		proxy, status := inject.Proxy(pod)
		if proxy == nil {
			if inject.WantsInjection(pod, namespaces[pod.Namespace]) {
				uninjected.add(pod, "")
			}
			continue
		}
		meshed++
		if trouble := proxyTrouble(status); trouble != "" {
			unready.add(pod, trouble)
		}
		if anchorsErr == nil && !trustsAny(inject.TrustAnchorsPEM(proxy), anchors) {
			staleTrust.add(pod, "")
		}
		if imageErr == nil && proxy.Image != image {
			note := proxyVersion(pod, proxy)
			if note == imageVersion(image) {
				note = proxy.Image
			}
			otherImage.add(pod, note)
		}
		if trouble := c.controllerTrouble(proxy); trouble != "" {
			otherController.add(pod, trouble)
		}
	}

	where := "namespace " + namespace
	if namespace == "" {
		where = "any namespace"
	}
	results := []Result{ok(listName)}
	const injectedName = "pods that ask for injection have a proxy"
	if uninjected.empty() {
		results = append(results, ok(injectedName))
	} else {
		results = append(results, failed(injectedName,
			"they were created while the injector did not answer (the webhook lets pods through when it is down); once `skein check` passes, recreate them: "+uninjected.restartHint(),
			"no proxy in %s", uninjected))
	}

	const readyName = "meshed pods' proxies are ready"
	switch {
	case meshed == 0:
		results = append(results, warned(readyName,
			"annotate a namespace or pod template with skein.io/inject=enabled, then restart its workloads",
			"no meshed pods in %s", where))
	case unready.empty():
		results = append(results, ok(readyName))
	default:
		results = append(results, failed(readyName,
			"kubectl -n "+unready.first.Namespace+" logs "+unready.first.Name+" -c "+inject.ProxyContainerName+"; a proxy is ready once it has its certificate from the controller",
			"not ready: %s", unready))
	}

	const trustName = "meshed pods were injected with one of the issuer's anchors"
	switch {
	case meshed == 0:
	case anchorsErr != nil:
		results = append(results, warned(trustName, "fix the identity issuer first (see `skein check`)", "cannot read the issuer's anchor: %v", anchorsErr))
	case staleTrust.empty():
		results = append(results, ok(trustName))
	default:
		// After an anchor rotation this is only their spec: a running proxy
		// follows the controller's anchors and keeps them across its
		// container's restarts. After new trust replaced the old (not a
		// rotation) they cannot renew, and are not ready: the check above.
		results = append(results, warned(trustName,
			"injected before an anchor rotation, their proxies run on the anchors the controller sent them; recreate them at a convenient time so that their spec matches: "+staleTrust.restartHint(),
			"injected with anchors the mesh no longer has: %s", staleTrust))
	}

	if meshed > 0 {
		results = append(results, c.checkProxyTrust(ctx))
	}

	const controllerName = "meshed proxies find this controller"
	switch {
	case meshed == 0:
	case otherController.empty():
		results = append(results, ok(controllerName))
	default:
		results = append(results, failed(controllerName,
			"they were injected for another install, or before the controller's identity moved out of the workload form, and cannot renew their certificates with this controller; recreate them: "+otherController.restartHint(),
			"proxies of %s", otherController))
	}

	const imageName = "meshed proxies run the injector's image"
	switch {
	case meshed == 0:
	case imageErr != nil:
		results = append(results, warned(imageName, "fix the controller deployment first (see `skein check`)", "%v", imageErr))
	case otherImage.empty():
		results = append(results, ok(imageName))
	default:
		results = append(results, warned(imageName,
			"roll them onto the controller's version (they keep working meanwhile): "+strings.Join(otherImage.restartHints(), "; "),
			"the injector adds %s (version %s); proxies on another version or image: %s", image, imageVersion(image), otherImage))
	}
	return results
}

// controllerTrouble says why proxy would not reach this install's
// controller ("" when it would): another address, or no control-plane
// identity to expect (the proxy then expects a workload's).
func (c *Checker) controllerTrouble(proxy *corev1.Container) string {
	addr, id := inject.ControllerOf(proxy)
	if want := install.ControllerAddr(c.Namespace); addr != want {
		return "dials " + addr
	}
	if parsed, err := spiffeid.FromString(id); err != nil || !meshid.IsControlPlane(parsed) {
		return "expects the controller as " + cmp.Or(id, "ns/skein/sa/skein-controller")
	}
	return ""
}

// namespaces returns the namespace called name, or all of them, by name.
func (c *Checker) namespaces(ctx context.Context, name string) (map[string]*corev1.Namespace, error) {
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := map[string]*corev1.Namespace{}
	if name != "" {
		ns, err := c.Client.CoreV1().Namespaces().Get(callCtx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		out[ns.Name] = ns
		return out, nil
	}
	list, err := c.Client.CoreV1().Namespaces().List(callCtx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out, nil
}

// listPods lists the pods of namespace ("" for all), page by page.
func (c *Checker) listPods(ctx context.Context, namespace string) ([]corev1.Pod, error) {
	var pods []corev1.Pod
	opts := metav1.ListOptions{Limit: 500}
	for {
		callCtx, cancel := context.WithTimeout(ctx, timeout)
		list, err := c.Client.CoreV1().Pods(namespace).List(callCtx, opts)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("listing pods: %w", err)
		}
		pods = append(pods, list.Items...)
		if list.Continue == "" {
			return pods, nil
		}
		opts.Continue = list.Continue
	}
}

// issuerAnchors are the trust anchors of the issuer in effect: what the
// injector hands new proxies.
func (c *Checker) issuerAnchors(ctx context.Context) ([]*x509.Certificate, error) {
	secret, err := c.getSecret(ctx, install.IssuerSecretName)
	if err != nil {
		return nil, err
	}
	anchors, err := pki.ParseCertificates(secret.Data[identity.TrustAnchorFile])
	if err != nil {
		return nil, fmt.Errorf("secret %s %s: %w", install.IssuerSecretName, identity.TrustAnchorFile, err)
	}
	return anchors, nil
}

// notMeshable says a pod is left out of the data plane's checks: the
// control plane's and kube-system's pods, which the webhook never sees,
// and pods going away or finished.
func (c *Checker) notMeshable(pod *corev1.Pod) bool {
	return pod.Namespace == c.Namespace || pod.Namespace == "kube-system" || pod.DeletionTimestamp != nil ||
		pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// injectedImage is the proxy image the controller's injector adds.
func (c *Checker) injectedImage(ctx context.Context) (string, error) {
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d, err := c.Client.AppsV1().Deployments(c.Namespace).Get(callCtx, install.ControllerName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	for _, container := range d.Spec.Template.Spec.Containers {
		for _, env := range container.Env {
			if env.Name == install.ProxyImageEnv && env.Value != "" {
				return env.Value, nil
			}
		}
	}
	return "", fmt.Errorf("deployment %s sets no %s", install.ControllerName, install.ProxyImageEnv)
}

// proxyVersion is the version of pod's proxy: its skein.io/proxy-version
// annotation, else its image's tag.
func proxyVersion(pod *corev1.Pod, proxy *corev1.Container) string {
	if v := pod.Annotations[inject.AnnotationProxyVersion]; v != "" {
		return v
	}
	return imageVersion(proxy.Image)
}

// imageVersion is image's tag ("latest" when it has none), as the
// injector's skein.io/proxy-version annotation says it.
func imageVersion(image string) string {
	cfg := inject.Config{ProxyImage: image}
	return cfg.Version()
}

// trustsAny reports whether the PEM bundle holds one of anchors.
func trustsAny(bundlePEM string, anchors []*x509.Certificate) bool {
	bundle, err := pki.ParseCertificates([]byte(bundlePEM))
	if err != nil {
		return false
	}
	for _, a := range anchors {
		if containsCert(bundle, a) {
			return true
		}
	}
	return false
}

// proxyTrouble says in a few words why a proxy is not ready, "" when it is.
func proxyTrouble(status *corev1.ContainerStatus) string {
	if status == nil {
		return "not started"
	}
	return containerTrouble(*status)
}

// podList collects the pods a check found at fault, for its detail line.
type podList struct {
	first *corev1.Pod
	names []string
	pods  []*corev1.Pod // the first few, as many as names
	n     int
}

func (l *podList) add(pod *corev1.Pod, note string) {
	if l.first == nil {
		l.first = pod
	}
	if len(l.pods) < listed {
		l.pods = append(l.pods, pod)
	}
	l.n++
	if len(l.names) < listed {
		name := pod.Namespace + "/" + pod.Name
		if note != "" {
			name += " (" + note + ")"
		}
		l.names = append(l.names, name)
	}
}

func (l *podList) empty() bool { return l.n == 0 }

func (l podList) String() string {
	s := strings.Join(l.names, ", ")
	if more := l.n - len(l.names); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

// restartHints says how to recreate each listed pod, one command per
// workload.
func (l *podList) restartHints() []string {
	var hints []string
	for _, pod := range l.pods {
		if h := restartHint(pod); !slices.Contains(hints, h) {
			hints = append(hints, h)
		}
	}
	return hints
}

// restartHint says how to recreate the first pod: through what made it
// where that can be restarted, else by deleting it.
func (l *podList) restartHint() string { return restartHint(l.first) }

func restartHint(pod *corev1.Pod) string {
	for _, ref := range pod.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		switch ref.Kind {
		case "ReplicaSet":
			if name, ok := strings.CutSuffix(ref.Name, "-"+pod.Labels["pod-template-hash"]); ok && pod.Labels["pod-template-hash"] != "" {
				return fmt.Sprintf("kubectl -n %s rollout restart deployment %s", pod.Namespace, name)
			}
		case "StatefulSet", "DaemonSet":
			return fmt.Sprintf("kubectl -n %s rollout restart %s %s", pod.Namespace, strings.ToLower(ref.Kind), ref.Name)
		}
		return fmt.Sprintf("kubectl -n %s delete pod %s (its %s makes a new one)", pod.Namespace, pod.Name, ref.Kind)
	}
	return fmt.Sprintf("kubectl -n %s delete pod %s, then create it again", pod.Namespace, pod.Name)
}
