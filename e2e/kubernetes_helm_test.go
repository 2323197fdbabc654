package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/internal/controller/inject"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/install/installed"
)

// helmInstallFlags are the install both ways use: the same trust
// (skein identity generate), two controllers, the Grafana dashboards.
func helmInstallFlags(identityDir string) []string {
	return []string{"--namespace", controlNamespace, "--trust-domain", kubeTrustDomain, "--replicas", "2", "--grafana-dashboards", "--identity-dir", identityDir}
}

// helmRelease is the Helm release testHelmInstallMatchesSkeinInstall
// leaves for the Helm subtests after it.
type helmRelease struct {
	helm, chart string
	values      string // what skein install --print-values gave (the subtest's files go with it)
	manifests   string // what skein install renders for the same flags
}

// testHelmInstallMatchesSkeinInstall installs Skein twice into the empty
// cluster, `skein install | kubectl apply -f -` and then `helm install` of
// charts/skein with the values `skein install --print-values` gives for the
// same flags and trust, and compares the live objects (their specs and
// data; not what the API server or the tools set: status, uid, versions,
// cluster IPs, kubectl's last-applied copy, Helm's ownership marks). Only
// the webhook's serving certificate differs: skein install makes it at each
// run. `skein check` passes after either, and skein uninstall removes what
// it made, CRDs included with --crds (--force: they still hold the objects
// the earlier subtests left). It leaves the Helm release installed.
func (k *kube) testHelmInstallMatchesSkeinInstall(t *testing.T) helmRelease {
	skein := filepath.Join(binDir, "skein")
	helm := pinnedHelm(t)
	dir := readableDir(t)
	identityDir := filepath.Join(dir, "identity")
	k.run(nil, skein, "identity", "generate", "--out", identityDir)
	flags := helmInstallFlags(identityDir)

	manifests := k.run(nil, skein, append([]string{"install"}, flags...)...)
	k.kubectl([]byte(manifests), "apply", "-f", "-")
	k.waitFor("skein check to pass after skein install", 90*time.Second, func() error { _, err := k.check(); return err })
	byCLI := k.liveObjects(manifests)
	// The CRDs too, so that helm install makes them anew.
	k.uninstall("--crds", "--force")
	if left := k.remaining(manifests); len(left) > 0 {
		t.Fatalf("skein uninstall --crds left %v", left)
	}

	valuesFile := filepath.Join(dir, "values.yaml")
	values := k.run(nil, skein, append([]string{"install", "--print-values"}, flags...)...)
	if err := os.WriteFile(valuesFile, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	chart, err := filepath.Abs(filepath.Join("..", "charts", "skein"))
	if err != nil {
		t.Fatal(err)
	}
	said := k.helm(helm, "install", install.ReleaseName, chart, "-n", controlNamespace, "--create-namespace", "-f", valuesFile)
	t.Log(said)
	// The chart's notes say what helm uninstall will leave, and how to
	// delete it.
	if !strings.Contains(said, "leaves Skein's CRDs") || !strings.Contains(said, "kubectl delete crd -l app.kubernetes.io/part-of=skein") {
		t.Errorf("helm install does not say what helm uninstall leaves:\n%s", said)
	}
	k.waitFor("skein check to pass after helm install", 90*time.Second, func() error { _, err := k.check(); return err })
	byHelm := k.liveObjects(manifests)

	for key, want := range byCLI {
		got, ok := byHelm[key]
		switch {
		case !ok:
			t.Errorf("%s: made by skein install, not by helm install", key)
		case strings.HasPrefix(key, "Namespace/"):
			// helm install --create-namespace makes it, without the chart's labels.
		case !reflect.DeepEqual(got, want):
			a, _ := json.MarshalIndent(want, "", " ")
			b, _ := json.MarshalIndent(got, "", " ")
			t.Errorf("%s differs:\nskein install:\n%s\nhelm install:\n%s", key, a, b)
		}
	}
	if len(byHelm) != len(byCLI) {
		t.Errorf("helm install made %d of the objects, skein install %d", len(byHelm), len(byCLI))
	}

	return helmRelease{helm: helm, chart: chart, values: values, manifests: manifests}
}

// testHelmUpgradeKeepsTheTrust moves the shop onto the Helm-installed mesh
// (its greeters and client rolled, injected by the release's webhook with
// its anchor) and runs `helm upgrade` with the same values file and a
// debug log level, as a user changing one value does, under the client's
// 50 calls a second: the controllers roll, the anchor stays, no call fails.
func (k *kube) testHelmUpgradeKeepsTheTrust(t *testing.T, r helmRelease) {
	if r.chart == "" {
		t.Skip("no Helm release: the install subtest failed")
	}
	valuesFile := filepath.Join(readableDir(t), "values.yaml")
	if err := os.WriteFile(valuesFile, []byte(r.values), 0o600); err != nil {
		t.Fatal(err)
	}
	anchor := k.anchorFingerprint()
	k.kubectl(nil, "-n", shopNamespace, "scale", "deployment/greeter", "--replicas=2")
	k.kubectl(nil, "-n", shopNamespace, "rollout", "restart", "deployment/greeter", "deployment/client")
	greeters := k.waitForReadyPods(shopNamespace, "app=greeter", 2)
	client := k.waitForReadyPods(shopNamespace, "app=client", 1)[0]
	for _, p := range append(greeters, client) {
		proxy, _ := inject.Proxy(&p)
		if proxy == nil {
			t.Fatalf("pod %s has no proxy: the release's webhook did not inject it", p.Name)
		}
		if got := installed.Fingerprints([]byte(inject.TrustAnchorsPEM(proxy))); got != anchor {
			t.Fatalf("pod %s was injected with anchors %s, want the release's %s", p.Name, got, anchor)
		}
	}
	// The client's first calls may fail while its greeters become ready:
	// the load is measured once calls go through.
	k.waitFor("the client's calls to go through the Helm-installed mesh", 60*time.Second, func() error {
		if w := k.callsOver(client, 2*time.Second); len(w.Calls) == 0 || w.Failures > 0 {
			return fmt.Errorf("calls %v, %d failed (%v)", w.Calls, w.Failures, w.Failed)
		}
		return nil
	})
	k.rollControllersUnderLoad(t, client, "helm upgrade", func() {
		t.Log(k.helm(r.helm, "upgrade", install.ReleaseName, r.chart, "-n", controlNamespace, "-f", valuesFile, "--set", "controller.logLevel=debug"))
	})
	d, err := k.c.Client.AppsV1().Deployments(controlNamespace).Get(t.Context(), install.ControllerName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "-log-level debug") {
		t.Errorf("controller args after helm upgrade --set controller.logLevel=debug: %s", args)
	}
	if d.Annotations["meta.helm.sh/release-name"] != install.ReleaseName {
		t.Errorf("the controller Deployment is not the release's after helm upgrade: annotations %v", d.Annotations)
	}
}

// testHelmUninstall: helm uninstall removes what the release made but the
// CRDs (Helm never deletes a chart's crds/) and the namespace
// --create-namespace made; skein uninstall --crds then deletes the CRDs,
// which hold no object.
func (k *kube) testHelmUninstall(t *testing.T, r helmRelease) {
	if r.chart == "" {
		t.Skip("no Helm release: the install subtest failed")
	}
	t.Log(k.helm(r.helm, "uninstall", install.ReleaseName, "-n", controlNamespace, "--wait", "--timeout", "60s"))
	left := k.remaining(r.manifests)
	t.Logf("left after helm uninstall: %v", left)
	for _, key := range left {
		if !strings.HasPrefix(key, "CustomResourceDefinition/") && key != "Namespace/"+controlNamespace {
			t.Errorf("helm uninstall left %s", key)
		}
	}
	// Asked, skein uninstall deletes the CRDs too.
	k.kubectl(nil, "delete", "namespace", controlNamespace, "--timeout=60s")
	if said := k.uninstall("--crds"); !strings.Contains(said, "which hold no object") {
		t.Errorf("skein uninstall --crds of empty CRDs said %q", said)
	}
	if left := k.remaining(r.manifests); len(left) > 0 {
		t.Errorf("skein uninstall --crds left %v", left)
	}
}

// uninstall pipes `skein uninstall args` into kubectl delete and returns
// what skein said besides the manifests.
func (k *kube) uninstall(args ...string) string {
	k.t.Helper()
	cmd := k.c.Host.Command(k.t.Context(), filepath.Join(binDir, "skein"), append([]string{"uninstall", "--namespace", controlNamespace, "--kubeconfig", k.c.Kubeconfig}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		k.t.Fatalf("skein uninstall: %v\n%s", err, stderr.String())
	}
	k.kubectl(out, "delete", "--ignore-not-found", "--timeout=60s", "-f", "-")
	return stderr.String()
}

// pinnedHelm is the Helm CLI CI pins (scripts/helm.sh builds it once).
func pinnedHelm(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join("..", "scripts", "helm.sh"), "path").Output()
	if err != nil {
		t.Fatalf("scripts/helm.sh path: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// helm runs the Helm CLI against the cluster, with its own cache and
// configuration, and returns its output.
func (k *kube) helm(helm string, args ...string) string {
	k.t.Helper()
	home := k.t.TempDir()
	cmd := k.c.Host.Command(k.t.Context(), helm, append(args, "--kubeconfig", k.c.Kubeconfig)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	out, err := cmd.CombinedOutput()
	if err != nil {
		k.t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// liveObjects gets every object of manifests from the cluster, keyed
// Kind/namespace/name, each reduced to what the installer wrote.
func (k *kube) liveObjects(manifests string) map[string]map[string]any {
	k.t.Helper()
	var list struct{ Items []map[string]any }
	if err := json.Unmarshal([]byte(k.kubectl([]byte(manifests), "get", "-f", "-", "-o", "json")), &list); err != nil {
		k.t.Fatal(err)
	}
	objs := map[string]map[string]any{}
	for _, o := range list.Items {
		meta := o["metadata"].(map[string]any)
		key := fmt.Sprintf("%s/%v/%v", o["kind"], meta["namespace"], meta["name"])
		if meta["namespace"] == nil {
			key = fmt.Sprintf("%s/%v", o["kind"], meta["name"])
		}
		objs[key] = installedPart(o)
	}
	return objs
}

// installedPart drops what the API server, kubectl and Helm add, and the
// webhook's certificate, which skein install makes at each run.
func installedPart(o map[string]any) map[string]any {
	meta := o["metadata"].(map[string]any)
	kept := map[string]any{"name": meta["name"], "namespace": meta["namespace"]}
	for _, field := range []string{"labels", "annotations"} {
		m, _ := meta[field].(map[string]any)
		for _, k := range []string{"app.kubernetes.io/managed-by", "meta.helm.sh/release-name", "meta.helm.sh/release-namespace",
			"kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision"} {
			delete(m, k)
		}
		if len(m) > 0 {
			kept[field] = m
		}
	}
	o["metadata"] = kept
	delete(o, "status")
	switch o["kind"] {
	case "Service":
		spec := o["spec"].(map[string]any)
		delete(spec, "clusterIP")
		delete(spec, "clusterIPs")
	case "Secret":
		if meta["name"] == install.WebhookSecretName {
			delete(o, "data")
		}
	case "MutatingWebhookConfiguration":
		for _, w := range o["webhooks"].([]any) {
			delete(w.(map[string]any)["clientConfig"].(map[string]any), "caBundle")
		}
	}
	return o
}

// remaining lists the objects of manifests still in the cluster.
func (k *kube) remaining(manifests string) []string {
	k.t.Helper()
	cmd := k.c.Kubectl(k.t.Context(), "get", "-f", "-", "-o", "json", "--ignore-not-found")
	cmd.Stdin = strings.NewReader(manifests)
	out, err := cmd.Output()
	if err != nil {
		k.t.Fatalf("kubectl get: %v", err)
	}
	var list struct{ Items []map[string]any }
	if len(strings.TrimSpace(string(out))) > 0 {
		if err := json.Unmarshal(out, &list); err != nil {
			k.t.Fatalf("kubectl get: %v\n%s", err, out)
		}
	}
	var left []string
	for _, o := range list.Items {
		meta := o["metadata"].(map[string]any)
		if meta["deletionTimestamp"] != nil {
			continue // going
		}
		left = append(left, fmt.Sprintf("%s/%v", o["kind"], meta["name"]))
	}
	slices.Sort(left)
	return left
}
