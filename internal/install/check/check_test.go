package check_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/install/check"
)

type fakeAdmin struct{ err error }

func (f fakeAdmin) Ready(context.Context) error { return f.err }

// installed returns a fake cluster holding a rendered installation whose
// controller runs one ready pod, as after `kubectl apply` and a rollout.
func installed(t *testing.T) *fake.Clientset {
	t.Helper()
	objs, err := install.Objects(install.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var typed []runtime.Object
	for _, obj := range objs {
		if d, ok := obj.(*appsv1.Deployment); ok {
			d.Status.ReadyReplicas, d.Status.AvailableReplicas = 1, 1
		}
		if _, ok := obj.(*unstructured.Unstructured); !ok {
			typed = append(typed, obj)
		}
	}
	typed = append(typed, controllerPod("skein-controller-abc", true))
	return fake.NewClientset(typed...)
}

func controllerPod(name string, ready bool) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "skein", Labels: install.ControllerSelector},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "controller", Ready: ready,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			}},
		},
	}
}

func output(results []check.Result) string {
	var buf bytes.Buffer
	check.Print(&buf, results)
	return buf.String()
}

func TestPostInstallPassesOnAHealthyInstall(t *testing.T) {
	c := &check.Checker{Client: installed(t), Namespace: "skein", Admin: fakeAdmin{}}
	results := c.PostInstall(context.Background())
	if check.Failed(results) {
		t.Fatalf("a healthy install fails:\n%s", output(results))
	}
	out := output(results)
	for _, want := range []string{"[ok] namespace skein exists", "[ok] identity issuer is valid", "[ok] trust anchors match the issuer",
		"[ok] proxy injector webhook is configured", "[ok] controller deployment is available", "[ok] controller pods are ready", "[ok] controller answers /ready"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestPostInstallFailsWhenTheControllerIsStopped(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(t *testing.T, client *fake.Clientset)
		want []string
	}{
		{"scaled to zero", func(t *testing.T, client *fake.Clientset) {
			d := getDeployment(t, client)
			zero := int32(0)
			d.Spec.Replicas, d.Status.ReadyReplicas = &zero, 0
			updateDeployment(t, client, d)
			if err := client.CoreV1().Pods("skein").Delete(context.Background(), "skein-controller-abc", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, []string{"[FAIL] controller deployment is available: the deployment is scaled to 0 replicas", "hint: scale it up: kubectl -n skein scale deployment skein-controller --replicas=1", "[FAIL] controller pods are ready: no controller pods"}},
		{"pods not ready", func(t *testing.T, client *fake.Clientset) {
			d := getDeployment(t, client)
			d.Status.ReadyReplicas = 0
			updateDeployment(t, client, d)
			pod := controllerPod("skein-controller-abc", false)
			pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
			if _, err := client.CoreV1().Pods("skein").UpdateStatus(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}, []string{"[FAIL] controller deployment is available: 0 of 1 replicas are ready", "[FAIL] controller pods are ready: none ready: skein-controller-abc (CrashLoopBackOff)", "hint: kubectl -n skein logs skein-controller-abc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := installed(t)
			tc.stop(t, client)
			c := &check.Checker{Client: client, Namespace: "skein", Admin: fakeAdmin{errors.New("the server is currently unable to handle the request")}}
			results := c.PostInstall(context.Background())
			out := output(results)
			if !check.Failed(results) {
				t.Fatalf("a stopped controller passes:\n%s", out)
			}
			for _, want := range append(tc.want, "[FAIL] controller answers /ready: the server is currently unable") {
				if !strings.Contains(out, want) {
					t.Errorf("missing %q in\n%s", want, out)
				}
			}
		})
	}
}

func TestPostInstallFailsOnBrokenTrust(t *testing.T) {
	client := installed(t)
	ctx := context.Background()
	// A different install's trust anchors: proxies would refuse the issuer.
	other, err := install.Objects(install.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range other {
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			if _, err := client.CoreV1().ConfigMaps("skein").Update(ctx, o, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		case *corev1.Secret:
			if o.Name == install.WebhookSecretName {
				if _, err := client.CoreV1().Secrets("skein").Update(ctx, o, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	c := &check.Checker{Client: client, Namespace: "skein", Admin: fakeAdmin{}}
	out := output(c.PostInstall(ctx))
	for _, want := range []string{"[ok] identity issuer is valid", "[FAIL] trust anchors match the issuer", "[FAIL] proxy injector webhook is configured: secret skein-webhook-tls: serving certificate is not valid"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestPostInstallStopsWithoutNamespace(t *testing.T) {
	c := &check.Checker{Client: fake.NewClientset(), Namespace: "skein", Admin: fakeAdmin{}}
	results := c.PostInstall(context.Background())
	if len(results) != 1 || results[0].Status != check.Fail || !strings.Contains(results[0].Hint, "skein install") {
		t.Errorf("got\n%s", output(results))
	}
}

func TestCRDCheckNeedsEstablishedCRDs(t *testing.T) {
	crd := func(name, established string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
			"metadata": map[string]any{"name": name},
			"status":   map[string]any{"conditions": []any{map[string]any{"type": "Established", "status": established}}},
		}}
	}
	dyn := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme(), crd("workloads.skein.io", "True"), crd("servers.skein.io", "False"))
	for _, tc := range []struct {
		crds []string
		want string
	}{
		{[]string{"workloads.skein.io"}, "[ok] CRDs are established"},
		{[]string{"workloads.skein.io", "servers.skein.io"}, "[FAIL] CRDs are established: servers.skein.io is not established"},
		{[]string{"workloads.skein.io", "routes.skein.io"}, "[FAIL] CRDs are established: routes.skein.io:"},
	} {
		c := &check.Checker{Client: installed(t), Dynamic: dyn, CRDs: tc.crds, Namespace: "skein", Admin: fakeAdmin{}}
		if out := output(c.PostInstall(context.Background())); !strings.Contains(out, tc.want) {
			t.Errorf("CRDs %v: missing %q in\n%s", tc.crds, tc.want, out)
		}
	}
}

func TestPreInstall(t *testing.T) {
	for _, tc := range []struct {
		name     string
		minor    string
		allowed  bool
		existing []runtime.Object
		failed   bool
		want     []string
	}{
		{"fresh recent cluster", "33", true, nil, false, []string{"[ok] API server is reachable", "[ok] Kubernetes version is at least 1.29", "[ok] can create customresourcedefinitions", "[ok] namespace skein does not exist yet"}},
		{"old cluster warns", "27+", true, nil, false, []string{"[warn] Kubernetes version is at least 1.29: the server is v1.27"}},
		{"not an admin", "33", false, nil, true, []string{"[FAIL] can create mutatingwebhookconfigurations: not allowed", "hint: install as a cluster administrator"}},
		{"already installed", "33", true, []runtime.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "skein"}}}, true, []string{"[FAIL] namespace skein does not exist yet: namespace skein exists"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(tc.existing...)
			client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{Major: "1", Minor: tc.minor, GitVersion: "v1." + strings.TrimSuffix(tc.minor, "+") + ".0"}
			client.PrependReactor("create", "selfsubjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
				review := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
				review.Status.Allowed = tc.allowed
				return true, review, nil
			})
			c := &check.Checker{Client: client, Namespace: "skein"}
			results := c.PreInstall(context.Background())
			out := output(results)
			if check.Failed(results) != tc.failed {
				t.Errorf("failed = %v, want %v:\n%s", check.Failed(results), tc.failed, out)
			}
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("missing %q in\n%s", want, out)
				}
			}
		})
	}
}

func getDeployment(t *testing.T, client *fake.Clientset) *appsv1.Deployment {
	t.Helper()
	d, err := client.AppsV1().Deployments("skein").Get(context.Background(), install.ControllerName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func updateDeployment(t *testing.T, client *fake.Clientset, d *appsv1.Deployment) {
	t.Helper()
	if _, err := client.AppsV1().Deployments("skein").Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
