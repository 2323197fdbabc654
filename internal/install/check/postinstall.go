package check

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skeinmesh/skein/internal/install"
)

// PostInstall checks a running installation: its namespace, CRDs (and
// the Gateway API's, which only warn when missing), trust
// material, webhook configuration, and that the controller is up and
// answers. A missing namespace stops the checks there.
func (c *Checker) PostInstall(ctx context.Context) []Result {
	ns := c.checkNamespace(ctx)
	if ns.Status == Fail {
		return []Result{ns}
	}
	results := []Result{ns}
	if len(c.CRDs) > 0 && c.Dynamic != nil {
		results = append(results, c.checkCRDs(ctx))
	}
	if c.Dynamic != nil {
		results = append(results, c.checkGatewayAPI(ctx))
	}
	results = append(results, c.checkTrust(ctx)...)
	results = append(results, c.checkWebhook(ctx))
	results = append(results, c.checkDeployment(ctx), c.checkPods(ctx), c.checkAdminReady(ctx))
	return results
}

func installHint(ns string) string {
	return fmt.Sprintf("install with `skein install | kubectl apply -f -` (namespace %s)", ns)
}

func (c *Checker) checkNamespace(ctx context.Context) Result {
	name := fmt.Sprintf("namespace %s exists", c.Namespace)
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := c.Client.CoreV1().Namespaces().Get(callCtx, c.Namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return failed(name, installHint(c.Namespace), "%v", err)
	case err != nil:
		return failed(name, "check --kubeconfig, the current context and that the cluster is up", "%v", err)
	}
	return ok(name)
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func (c *Checker) checkCRDs(ctx context.Context) Result {
	const name = "CRDs are established"
	var problems []string
	for _, crd := range c.CRDs {
		callCtx, cancel := context.WithTimeout(ctx, timeout)
		obj, err := c.Dynamic.Resource(crdResource).Get(callCtx, crd, metav1.GetOptions{})
		cancel()
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", crd, err))
		} else if !conditionTrue(obj, "Established") {
			problems = append(problems, crd+" is not established")
		}
	}
	if len(problems) > 0 {
		return failed(name, "apply the manifests again (`skein install | kubectl apply -f -`) and look at `kubectl describe crd NAME`", "%s", strings.Join(problems, "; "))
	}
	return ok(name)
}

func conditionTrue(obj *unstructured.Unstructured, condition string) bool {
	conditions, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conditions {
		m, _ := c.(map[string]any)
		if m["type"] == condition && m["status"] == "True" {
			return true
		}
	}
	return false
}

func (c *Checker) checkDeployment(ctx context.Context) Result {
	name := "controller deployment is available"
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d, err := c.Client.AppsV1().Deployments(c.Namespace).Get(callCtx, install.ControllerName, metav1.GetOptions{})
	if err != nil {
		return failed(name, installHint(c.Namespace), "%v", err)
	}
	if d.Spec.Replicas != nil && *d.Spec.Replicas == 0 {
		return failed(name, fmt.Sprintf("scale it up: kubectl -n %s scale deployment %s --replicas=1", c.Namespace, install.ControllerName),
			"the deployment is scaled to 0 replicas: no identity, discovery or injection")
	}
	if d.Status.ReadyReplicas < 1 {
		return failed(name, fmt.Sprintf("kubectl -n %s describe deployment %s; kubectl -n %s logs deployment/%s", c.Namespace, install.ControllerName, c.Namespace, install.ControllerName),
			"0 of %d replicas are ready", replicas(d.Spec.Replicas))
	}
	return ok(name)
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func (c *Checker) checkPods(ctx context.Context) Result {
	name := "controller pods are ready"
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pods, err := c.Client.CoreV1().Pods(c.Namespace).List(callCtx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(install.ControllerSelector).String(),
	})
	if err != nil {
		return failed(name, "", "listing pods: %v", err)
	}
	if len(pods.Items) == 0 {
		return failed(name, fmt.Sprintf("kubectl -n %s describe deployment %s (scaled to 0, or pods not created: RBAC, quota, pod security)", c.Namespace, install.ControllerName),
			"no controller pods")
	}
	var ready int
	var notReady []string
	for i := range pods.Items {
		pod := &pods.Items[i]
		if podReady(pod) {
			ready++
		} else {
			notReady = append(notReady, pod.Name+" ("+podTrouble(pod)+")")
		}
	}
	if ready == 0 {
		return failed(name, fmt.Sprintf("kubectl -n %s logs %s", c.Namespace, pods.Items[0].Name), "none ready: %s", strings.Join(notReady, ", "))
	}
	if len(notReady) > 0 {
		return warned(name, fmt.Sprintf("kubectl -n %s describe pod %s", c.Namespace, pods.Items[0].Name),
			"%d of %d ready; not ready: %s", ready, len(pods.Items), strings.Join(notReady, ", "))
	}
	return ok(name)
}

func podReady(pod *corev1.Pod) bool {
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podTrouble says in a few words why a pod is not ready.
func podTrouble(pod *corev1.Pod) string {
	for _, cs := range pod.Status.ContainerStatuses {
		if trouble := containerTrouble(cs); trouble != "" {
			return trouble
		}
	}
	if pod.Status.Phase != "" {
		return string(pod.Status.Phase)
	}
	return "not scheduled"
}

// containerTrouble says in a few words why a container is not ready, ""
// when it is.
func containerTrouble(cs corev1.ContainerStatus) string {
	switch {
	case cs.Ready:
		return ""
	case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
		return cs.State.Waiting.Reason
	case cs.State.Terminated != nil:
		t := cs.State.Terminated
		return fmt.Sprintf("container %s terminated (%s, exit code %d)", cs.Name, cmp.Or(t.Reason, "no reason given"), t.ExitCode)
	}
	return "running, not ready: /ready fails"
}

func (c *Checker) checkAdminReady(ctx context.Context) Result {
	const name = "controller answers /ready"
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.admin().Ready(callCtx); err != nil {
		return failed(name, fmt.Sprintf("kubectl -n %s logs deployment/%s", c.Namespace, install.ControllerName), "%v", err)
	}
	return ok(name)
}
