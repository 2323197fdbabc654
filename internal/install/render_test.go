package install_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/config"
	"github.com/skeinmesh/skein/config/grafana"
	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/pki"
)

// parse splits rendered YAML back into objects.
func parse(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var lines []string
		for _, line := range strings.Split(doc, "\n") {
			if !strings.HasPrefix(line, "#") && line != "---" {
				lines = append(lines, line)
			}
		}
		doc = strings.Join(lines, "\n") + "\n" // the separator took the last line's end
		if strings.TrimSpace(doc) == "" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			t.Fatalf("document does not parse: %v\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
	return objs
}

func kindNames(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+" "+o.GetName())
	}
	return out
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s in %v", kind, name, kindNames(objs))
	return nil
}

func secretData(t *testing.T, secret *unstructured.Unstructured, key string) []byte {
	t.Helper()
	s, _, _ := unstructured.NestedString(secret.Object, "data", key)
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(data) == 0 {
		t.Fatalf("secret %s key %s: %q, %v", secret.GetName(), key, s, err)
	}
	return data
}

// TestRenderHasEveryObjectInApplyOrder: the chart's objects in Helm's
// install order: CRDs first, namespace, Secrets and ConfigMaps before the
// controller that mounts them, the webhook configuration last so that it
// is never registered before the controller that serves it exists.
func TestRenderHasEveryObjectInApplyOrder(t *testing.T) {
	out, err := install.Render(install.Config{})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(kindNames(parse(t, out)), "\n")
	want := strings.Join([]string{
		"CustomResourceDefinition authorizationpolicies.policy.skein.io",
		"CustomResourceDefinition meshtlsauthentications.policy.skein.io",
		"CustomResourceDefinition networkauthentications.policy.skein.io",
		"CustomResourceDefinition servers.policy.skein.io",
		"CustomResourceDefinition workloads.skein.io",
		"Namespace skein",
		"ServiceAccount skein-controller",
		"Secret skein-identity-issuer",
		"Secret skein-join-token-key",
		"Secret skein-webhook-tls",
		"ConfigMap skein-config",
		"ConfigMap skein-join-token-public-key",
		"ConfigMap skein-trust-anchors",
		"ClusterRole skein-controller",
		"ClusterRoleBinding skein-controller",
		"Role skein-controller",
		"RoleBinding skein-controller",
		"Service skein-controller",
		"Deployment skein-controller",
		"MutatingWebhookConfiguration skein-proxy-injector",
	}, "\n")
	if got != want {
		t.Errorf("objects:\n%s\nwant:\n%s", got, want)
	}
	objs := parse(t, out)
	for _, o := range objs {
		if o.GetLabels()["app.kubernetes.io/part-of"] != "skein" {
			t.Errorf("%s %s is not labelled part-of skein", o.GetKind(), o.GetName())
		}
	}
	// Skein's CRDs are the chart's crds/ as they are (Helm templates none).
	crds, err := config.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range crds {
		var shipped map[string]any
		if err := yaml.Unmarshal(file, &shipped); err != nil {
			t.Fatal(err)
		}
		name, _, _ := unstructured.NestedString(shipped, "metadata", "name")
		if !reflect.DeepEqual(find(t, objs, "CustomResourceDefinition", name).Object, shipped) {
			t.Errorf("CRD %s is not rendered as the chart ships it", name)
		}
	}
}

// TestGatewayAPICRDsOnlyWhenAsked: the Gateway API CRDs are rendered
// after Skein's own when given, as the module ships them (its bundle
// version annotation kept, no Skein label: they are the cluster's), and
// never by uninstall.
func TestGatewayAPICRDsOnlyWhenAsked(t *testing.T) {
	without, err := install.Render(install.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range parse(t, without) {
		if o.GetKind() == "CustomResourceDefinition" && strings.HasSuffix(o.GetName(), ".gateway.networking.k8s.io") {
			t.Errorf("rendered %s without being asked", o.GetName())
		}
	}
	cfg := install.Config{GatewayAPICRDs: true}
	with, err := install.Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	objs := parse(t, with)
	if got, want := len(objs), len(parse(t, without))+2; got != want {
		t.Errorf("%d objects with the Gateway API CRDs, want %d", got, want)
	}
	if i, j := slices.IndexFunc(objs, isGatewayCRD), slices.IndexFunc(objs, isKind("ClusterRole")); i < 0 || i > j {
		t.Errorf("objects %v: want the Gateway API CRDs before the controller's roles", kindNames(objs))
	}
	gatewayCRDs, err := config.GatewayAPICRDs()
	if err != nil {
		t.Fatal(err)
	}
	for i, file := range gatewayCRDs {
		var shipped map[string]any
		if err := yaml.Unmarshal(file, &shipped); err != nil {
			t.Fatal(err)
		}
		name, _, _ := unstructured.NestedString(shipped, "metadata", "name")
		rendered := find(t, objs, "CustomResourceDefinition", name).DeepCopy()
		if rendered.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("%s: not kept by helm uninstall (helm.sh/resource-policy)", name)
		}
		annotations := rendered.GetAnnotations()
		delete(annotations, "helm.sh/resource-policy")
		rendered.SetAnnotations(annotations)
		if !reflect.DeepEqual(rendered.Object, shipped) {
			t.Errorf("Gateway API CRD %d (%s) is not rendered as shipped", i, name)
		}
	}
	httpRoutes := find(t, objs, "CustomResourceDefinition", "httproutes.gateway.networking.k8s.io")
	if v := httpRoutes.GetAnnotations()["gateway.networking.k8s.io/bundle-version"]; v != "v1.6.3" {
		t.Errorf("bundle-version annotation = %q, want v1.6.3", v)
	}
	if _, labelled := httpRoutes.GetLabels()["app.kubernetes.io/part-of"]; labelled {
		t.Error("the Gateway API CRD is labelled as Skein's")
	}
	uninstall, err := install.RenderUninstall(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range parse(t, uninstall) {
		if strings.HasSuffix(o.GetName(), ".gateway.networking.k8s.io") {
			t.Errorf("uninstall deletes %s", o.GetName())
		}
	}
}

func isGatewayCRD(o *unstructured.Unstructured) bool {
	return o.GetKind() == "CustomResourceDefinition" && strings.HasSuffix(o.GetName(), ".gateway.networking.k8s.io")
}

func isKind(kind string) func(*unstructured.Unstructured) bool {
	return func(o *unstructured.Unstructured) bool { return o.GetKind() == kind }
}

// TestGrafanaDashboardsOnlyWhenAsked: --grafana-dashboards renders the
// shipped dashboards as one ConfigMap labelled for Grafana's sidecar, each
// file a key holding the same dashboard, small enough for kubectl apply's
// last-applied annotation (256 KiB); without it there is none.
func TestGrafanaDashboardsOnlyWhenAsked(t *testing.T) {
	without, err := install.Render(install.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range parse(t, without) {
		if o.GetName() == install.GrafanaDashboardsConfigMapName {
			t.Error("rendered the Grafana dashboards without being asked")
		}
	}
	dashboards, err := grafana.Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, d := range dashboards {
		files[d.File] = d.JSON
	}
	with, err := install.Render(install.Config{Namespace: "mesh", GrafanaDashboards: true})
	if err != nil {
		t.Fatal(err)
	}
	cm := find(t, parse(t, with), "ConfigMap", install.GrafanaDashboardsConfigMapName)
	if cm.GetNamespace() != "mesh" || cm.GetLabels()[install.GrafanaDashboardLabel] != "1" || cm.GetLabels()["app.kubernetes.io/part-of"] != "skein" {
		t.Errorf("ConfigMap %s/%s labels %v: want namespace mesh, grafana_dashboard: \"1\", part-of skein", cm.GetNamespace(), cm.GetName(), cm.GetLabels())
	}
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	if len(data) != len(files) {
		t.Errorf("%d keys, want one per dashboard (%d)", len(data), len(files))
	}
	size := 0
	for name, orig := range files {
		var want, got any
		if err := json.Unmarshal(orig, &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(data[name]), &got); err != nil {
			t.Errorf("key %s: %v", name, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("key %s is not the dashboard %s", name, name)
		}
		size += len(data[name])
	}
	if size > 128<<10 {
		t.Errorf("dashboards take %d bytes: kubectl apply's last-applied copy would pass the 256 KiB annotation limit", size)
	}
}

// With more than one controller, a disruption budget keeps all but one up
// through a drain; with one there is no budget, which would block drains.
func TestDisruptionBudgetOnlyWithSeveralReplicas(t *testing.T) {
	for _, replicas := range []int32{1, 3} {
		out, err := install.Render(install.Config{Replicas: replicas})
		if err != nil {
			t.Fatal(err)
		}
		objs := parse(t, out)
		names := strings.Join(kindNames(objs), ",")
		if replicas == 1 {
			if strings.Contains(names, "PodDisruptionBudget") {
				t.Errorf("one replica, yet a disruption budget: %s", names)
			}
			continue
		}
		if !strings.Contains(names, "PodDisruptionBudget skein-controller") {
			t.Fatalf("no disruption budget: %s", names)
		}
		pdb := find(t, objs, "PodDisruptionBudget", "skein-controller")
		if v, _, _ := unstructured.NestedFieldNoCopy(pdb.Object, "spec", "maxUnavailable"); fmt.Sprint(v) != "1" {
			t.Errorf("maxUnavailable %v, want 1", v)
		}
		selector, _, _ := unstructured.NestedStringMap(pdb.Object, "spec", "selector", "matchLabels")
		podLabels, _, _ := unstructured.NestedStringMap(find(t, objs, "Deployment", "skein-controller").Object, "spec", "template", "metadata", "labels")
		for k, v := range selector {
			if podLabels[k] != v {
				t.Errorf("budget selects %s=%s, the controller's pods have %v", k, v, podLabels)
			}
		}
		if len(selector) == 0 {
			t.Error("budget selects nothing")
		}
	}
}

// The controller's roles grant exactly what its informers and calls use:
// list and watch on the model's kinds and namespaces, create on
// TokenReviews, get and watch on its own issuer Secret, nothing else.
func TestControllerRolesAreExactlyWhatItUses(t *testing.T) {
	out, err := install.Render(install.Config{})
	if err != nil {
		t.Fatal(err)
	}
	objs := parse(t, out)
	var got []string
	for _, role := range []*unstructured.Unstructured{find(t, objs, "ClusterRole", "skein-controller"), find(t, objs, "Role", "skein-controller")} {
		rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
		for _, r := range rules {
			rule := r.(map[string]any)
			groups, _, _ := unstructured.NestedStringSlice(rule, "apiGroups")
			resources, _, _ := unstructured.NestedStringSlice(rule, "resources")
			names, _, _ := unstructured.NestedStringSlice(rule, "resourceNames")
			verbs, _, _ := unstructured.NestedStringSlice(rule, "verbs")
			for _, g := range groups {
				for _, res := range resources {
					for _, verb := range verbs {
						grant := fmt.Sprintf("%s %s/%s %s", role.GetKind(), g, res, verb)
						if len(names) > 0 {
							grant += " " + strings.Join(names, ",")
						}
						got = append(got, grant)
					}
				}
			}
		}
	}
	slices.Sort(got)
	want := []string{
		"ClusterRole /namespaces list", "ClusterRole /namespaces watch",
		"ClusterRole /pods list", "ClusterRole /pods watch",
		"ClusterRole /services list", "ClusterRole /services watch",
		"ClusterRole authentication.k8s.io/tokenreviews create",
		"ClusterRole discovery.k8s.io/endpointslices list", "ClusterRole discovery.k8s.io/endpointslices watch",
		"ClusterRole gateway.networking.k8s.io/grpcroutes list", "ClusterRole gateway.networking.k8s.io/grpcroutes watch",
		"ClusterRole gateway.networking.k8s.io/httproutes list", "ClusterRole gateway.networking.k8s.io/httproutes watch",
		"ClusterRole policy.skein.io/authorizationpolicies list", "ClusterRole policy.skein.io/authorizationpolicies watch",
		"ClusterRole policy.skein.io/meshtlsauthentications list", "ClusterRole policy.skein.io/meshtlsauthentications watch",
		"ClusterRole policy.skein.io/networkauthentications list", "ClusterRole policy.skein.io/networkauthentications watch",
		"ClusterRole policy.skein.io/servers list", "ClusterRole policy.skein.io/servers watch",
		"ClusterRole skein.io/workloads list", "ClusterRole skein.io/workloads watch",
		"Role /secrets get skein-identity-issuer", "Role /secrets watch skein-identity-issuer",
	}
	if !slices.Equal(got, want) {
		t.Errorf("the controller may:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRenderedTrustIsValid(t *testing.T) {
	out, err := install.Render(install.Config{Namespace: "mesh", TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	objs := parse(t, out)
	now := time.Now()

	issuer := find(t, objs, "Secret", install.IssuerSecretName)
	if typ, _, _ := unstructured.NestedString(issuer.Object, "type"); typ != "kubernetes.io/tls" {
		t.Errorf("issuer secret type %q", typ)
	}
	anchorPEM := secretData(t, issuer, identity.TrustAnchorFile)
	iss, err := identity.ParseIssuer(secretData(t, issuer, identity.IssuerCertFile), secretData(t, issuer, identity.IssuerKeyFile), anchorPEM, now)
	if err != nil {
		t.Fatalf("issuer secret does not pass ParseIssuer: %v", err)
	}
	if got := iss.Certificate().URIs[0].String(); got != "spiffe://example.org" {
		t.Errorf("issuer trust domain %s", got)
	}
	cm := find(t, objs, "ConfigMap", install.TrustAnchorsConfigMapName)
	if got, _, _ := unstructured.NestedString(cm.Object, "data", "ca.crt"); got != string(anchorPEM) {
		t.Error("trust-anchors ConfigMap does not hold the issuer's anchor")
	}
	secretData(t, find(t, objs, "Secret", install.JoinTokenKeySecretName), identity.JoinTokenKeyFile)

	webhookSecret := find(t, objs, "Secret", install.WebhookSecretName)
	mwc := find(t, objs, "MutatingWebhookConfiguration", install.WebhookConfigurationName)
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	caB64, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "caBundle")
	caBundle, _ := base64.StdEncoding.DecodeString(caB64)
	if err := install.VerifyWebhookTLS(caBundle, secretData(t, webhookSecret, "tls.crt"), secretData(t, webhookSecret, "tls.key"), "skein-controller.mesh.svc", now); err != nil {
		t.Errorf("caBundle does not verify the serving certificate: %v", err)
	}
	if err := install.VerifyWebhookTLS(caBundle, secretData(t, webhookSecret, "tls.crt"), secretData(t, webhookSecret, "tls.key"), "skein-controller.skein.svc", now); err == nil {
		t.Error("serving certificate is valid for another namespace's service")
	}
}

func TestWebhookNeverBlocksOrInjectsTheControlPlane(t *testing.T) {
	out, err := install.Render(install.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mwc := find(t, parse(t, out), "MutatingWebhookConfiguration", install.WebhookConfigurationName)
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	if len(hooks) != 1 {
		t.Fatalf("%d webhooks", len(hooks))
	}
	hook := hooks[0].(map[string]any)
	for _, f := range []struct {
		path []string
		want string
	}{
		{[]string{"failurePolicy"}, "Ignore"},
		{[]string{"sideEffects"}, "None"},
		{[]string{"reinvocationPolicy"}, "Never"},
		{[]string{"clientConfig", "service", "namespace"}, "skein"},
		{[]string{"clientConfig", "service", "name"}, "skein-controller"},
		{[]string{"clientConfig", "service", "path"}, "/inject"},
	} {
		if got, _, _ := unstructured.NestedString(hook, f.path...); got != f.want {
			t.Errorf("%v = %q, want %q", f.path, got, f.want)
		}
	}
	if got := fmt.Sprint(hook["timeoutSeconds"]); got != "5" {
		t.Errorf("timeoutSeconds %s", got)
	}
	exprs, _, _ := unstructured.NestedSlice(hook, "namespaceSelector", "matchExpressions")
	values, _, _ := unstructured.NestedStringSlice(exprs[0].(map[string]any), "values")
	if op := exprs[0].(map[string]any)["operator"]; op != "NotIn" || strings.Join(values, ",") != "skein,kube-system" {
		t.Errorf("namespaceSelector %v", exprs)
	}
	if _, found := hook["objectSelector"]; found {
		t.Error("objectSelector set: the injector decides from annotations")
	}
}

func TestRenderIsDeterministicForGivenMaterial(t *testing.T) {
	dir := t.TempDir()
	if _, err := identity.Generate(identity.GenerateConfig{TrustDomain: mustTD(t, "cluster.local"), Dir: dir}); err != nil {
		t.Fatal(err)
	}
	material, err := install.LoadIdentityDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := install.Config{Identity: material, Webhook: webhookTLS(t)}
	a, err := install.Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := install.Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("two renders of the same config differ")
	}
	if !bytes.Contains(a, []byte(base64.StdEncoding.EncodeToString(material.IssuerCertPEM))) {
		t.Error("render did not use the given issuer")
	}
}

func TestUninstallRendersTheSameObjectsWebhookFirst(t *testing.T) {
	in, err := install.Render(install.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// External mode needs a trust anchor to install, not to uninstall.
	out, err := install.RenderUninstall(install.Config{IdentityMode: install.IdentityExternal}, true)
	if err != nil {
		t.Fatal(err)
	}
	inNames, outNames := kindNames(parse(t, in)), kindNames(parse(t, out))
	if len(inNames) != len(outNames) {
		t.Fatalf("install %v, uninstall %v", inNames, outNames)
	}
	for i := range inNames {
		if inNames[i] != outNames[len(outNames)-1-i] {
			t.Errorf("uninstall is not install reversed: %v vs %v", inNames, outNames)
			break
		}
	}
	// Without being asked, the CRDs (and every skein.io resource) stay.
	kept, err := install.RenderUninstall(install.Config{}, false)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, name := range outNames {
		if !strings.HasPrefix(name, "CustomResourceDefinition ") {
			want = append(want, name)
		}
	}
	if got := kindNames(parse(t, kept)); !slices.Equal(got, want) {
		t.Errorf("uninstall without the CRDs: %v, want %v", got, want)
	}
}

func TestExternalIdentityRendersNoIssuerSecret(t *testing.T) {
	dir := t.TempDir()
	if _, err := identity.Generate(identity.GenerateConfig{TrustDomain: mustTD(t, "cluster.local"), Dir: dir}); err != nil {
		t.Fatal(err)
	}
	material, err := install.LoadIdentityDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := install.Render(install.Config{IdentityMode: install.IdentityExternal, Identity: install.IdentityMaterial{TrustAnchorPEM: material.TrustAnchorPEM}})
	if err != nil {
		t.Fatal(err)
	}
	objs := parse(t, out)
	for _, o := range objs {
		if o.GetName() == install.IssuerSecretName {
			t.Error("external mode rendered the issuer secret")
		}
	}
	cm := find(t, objs, "ConfigMap", install.TrustAnchorsConfigMapName)
	if got, _, _ := unstructured.NestedString(cm.Object, "data", "ca.crt"); got != string(material.TrustAnchorPEM) {
		t.Error("trust-anchors ConfigMap does not hold the given anchor")
	}
}

func TestConfigErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  install.Config
		want string
	}{
		{"external without anchor", install.Config{IdentityMode: install.IdentityExternal}, "trust-anchor:"},
		{"bad namespace", install.Config{Namespace: "Skein_NS"}, "namespace:"},
		{"bad trust domain", install.Config{TrustDomain: "no/slash"}, "trust-domain:"},
		{"negative replicas", install.Config{Replicas: -1}, "replicas:"},
		{"bad mode", install.Config{IdentityMode: "vault"}, "identity:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := install.Render(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// With --namespace, the injector hands proxies the controller's Service in
// that namespace, never skein's.
func TestControllerTellsTheInjectorItsOwnNamespace(t *testing.T) {
	out, err := install.Render(install.Config{Namespace: "other-ns"})
	if err != nil {
		t.Fatal(err)
	}
	deploy := find(t, parse(t, out), "Deployment", "skein-controller")
	containers, _, _ := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	joined := " " + strings.Join(args, " ") + " "
	for _, want := range []string{
		" -proxy-controller-addr skein-controller.other-ns.svc.cluster.local:8086 ",
		" -identity-secret other-ns/skein-identity-issuer ",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("controller args %q lack %q", joined, want)
		}
	}
	if strings.Contains(string(out), ".skein.svc") {
		t.Error("an installation in other-ns still names a service in namespace skein")
	}
}

// The controller verifies join tokens; it must not be able to mint them:
// its pod mounts the join-token key's public half, the webhook's serving
// pair, and nothing else — no issuer key, no join-token signing key.
func TestControllerMountsNoSigningKey(t *testing.T) {
	out, err := install.Render(install.Config{})
	if err != nil {
		t.Fatal(err)
	}
	objs := parse(t, out)
	spec, _, _ := unstructured.NestedMap(find(t, objs, "Deployment", "skein-controller").Object, "spec", "template", "spec")
	volumes, _, _ := unstructured.NestedSlice(spec, "volumes")
	mounted := map[string][]byte{} // volume/file -> content
	for _, v := range volumes {
		vol := v.(map[string]any)
		var data map[string][]byte
		switch {
		case vol["secret"] != nil:
			name, _, _ := unstructured.NestedString(vol, "secret", "secretName")
			secret := find(t, objs, "Secret", name)
			raw, _, _ := unstructured.NestedStringMap(secret.Object, "data")
			data = map[string][]byte{}
			for k := range raw {
				data[k] = secretData(t, secret, k)
			}
		case vol["configMap"] != nil:
			name, _, _ := unstructured.NestedString(vol, "configMap", "name")
			raw, _, _ := unstructured.NestedStringMap(find(t, objs, "ConfigMap", name).Object, "data")
			data = map[string][]byte{}
			for k, v := range raw {
				data[k] = []byte(v)
			}
		default:
			t.Fatalf("volume %v is neither a Secret nor a ConfigMap", vol)
		}
		for file, content := range data {
			mounted[vol["name"].(string)+"/"+file] = content
		}
	}
	var files []string
	for f := range mounted {
		files = append(files, f)
	}
	slices.Sort(files)
	if want := []string{"join-token-public-key/join-token.pub", "webhook-tls/ca.crt", "webhook-tls/tls.crt", "webhook-tls/tls.key"}; !slices.Equal(files, want) {
		t.Errorf("the controller mounts %v, want %v", files, want)
	}
	signingKeys := map[string][]byte{
		"issuer key":     secretData(t, find(t, objs, "Secret", install.IssuerSecretName), identity.IssuerKeyFile),
		"join-token key": secretData(t, find(t, objs, "Secret", install.JoinTokenKeySecretName), identity.JoinTokenKeyFile),
	}
	for file, content := range mounted {
		for what, key := range signingKeys {
			if bytes.Contains(content, bytes.TrimSpace(key)) {
				t.Errorf("the controller mounts the %s as %s", what, file)
			}
		}
	}
	joinKey, err := pki.ParsePrivateKey(signingKeys["join-token key"])
	if err != nil {
		t.Fatal(err)
	}
	pub, err := pki.ParsePublicKey(mounted["join-token-public-key/join-token.pub"])
	if err != nil || !pub.Equal(&joinKey.PublicKey) {
		t.Errorf("join-token.pub is not the public half of the join-token key (%v)", err)
	}
	containers, _, _ := unstructured.NestedSlice(spec, "containers")
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	if i := slices.Index(args, "-join-token-key"); i < 0 || args[i+1] != "/var/run/skein/join-token/join-token.pub" {
		t.Errorf("controller args %v: -join-token-key is not the mounted public key", args)
	}
}
