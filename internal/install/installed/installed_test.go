package installed_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/install/installed"
)

// cluster holds what `kubectl apply` of a render of cfg would: the
// objects the reader looks at.
func cluster(t *testing.T, cfg install.Config) (kubernetes.Interface, []runtime.Object) {
	t.Helper()
	objs, err := install.Objects(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	apply(t, client, objs)
	return client, objs
}

func apply(t *testing.T, client kubernetes.Interface, objs []runtime.Object) {
	t.Helper()
	ctx := context.Background()
	for _, obj := range objs {
		var err error
		switch o := obj.(type) {
		case *corev1.Secret:
			_ = client.CoreV1().Secrets(o.Namespace).Delete(ctx, o.Name, metav1.DeleteOptions{})
			_, err = client.CoreV1().Secrets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ConfigMap:
			_ = client.CoreV1().ConfigMaps(o.Namespace).Delete(ctx, o.Name, metav1.DeleteOptions{})
			_, err = client.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			_ = client.AppsV1().Deployments(o.Namespace).Delete(ctx, o.Name, metav1.DeleteOptions{})
			_, err = client.AppsV1().Deployments(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *admissionv1.MutatingWebhookConfiguration:
			_ = client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, o.Name, metav1.DeleteOptions{})
			_, err = client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// trust is the data of the objects that hold the mesh's trust, by name.
func trust(objs []runtime.Object) map[string]string {
	out := map[string]string{}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Secret:
			for k, v := range o.Data {
				out[o.Name+"/"+k] = string(v)
			}
		case *corev1.ConfigMap:
			if o.Name != install.ConfigConfigMapName {
				for k, v := range o.Data {
					out[o.Name+"/"+k] = v
				}
			}
		}
	}
	return out
}

func installedConfig() install.Config {
	cfg := install.Default()
	cfg.Namespace, cfg.TrustDomain, cfg.Replicas, cfg.LogLevel = "mesh", "example.org", 2, "warn"
	return cfg
}

func TestRenderingWhatWasReadKeepsEveryPieceOfTrust(t *testing.T) {
	client, first := cluster(t, installedConfig())
	ctx := context.Background()
	ns, err := installed.FindNamespace(ctx, client)
	if err != nil || ns != "mesh" {
		t.Fatalf("FindNamespace = %q, %v; want mesh", ns, err)
	}
	m, err := installed.Read(ctx, client, ns)
	if err != nil || m == nil {
		t.Fatalf("Read = %v, %v", m, err)
	}
	if m.Recorded == nil || m.Recorded.TrustDomain != "example.org" || m.Recorded.Replicas != 2 || m.Recorded.LogLevel != "warn" {
		t.Errorf("recorded %+v", m.Recorded)
	}
	if m.ProxyImage != install.Default().ProxyImage {
		t.Errorf("proxy image %q", m.ProxyImage)
	}
	again := m.Recorded.Config()
	note, err := installed.Reuse(&again, m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(note, "kept the trust of the mesh in namespace mesh (anchor sha256:") {
		t.Errorf("note %q", note)
	}
	second, err := install.Objects(again)
	if err != nil {
		t.Fatal(err)
	}
	want, got := trust(first), trust(second)
	if len(want) < 8 {
		t.Fatalf("only %d trust keys rendered: %v", len(want), want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s changed on the second render", k)
		}
	}
	// A render without reading makes new trust: the comparison above
	// would notice.
	fresh, err := install.Objects(installedConfig())
	if err != nil {
		t.Fatal(err)
	}
	if trust(fresh)[install.IssuerSecretName+"/"+identity.TrustAnchorFile] == want[install.IssuerSecretName+"/"+identity.TrustAnchorFile] {
		t.Error("a fresh render kept the anchor: the test proves nothing")
	}
}

func TestAnEmptyClusterHasNoMesh(t *testing.T) {
	client := fake.NewClientset()
	if ns, err := installed.FindNamespace(context.Background(), client); ns != "" || err != nil {
		t.Errorf("FindNamespace = %q, %v", ns, err)
	}
	if m, err := installed.Read(context.Background(), client, "skein"); m != nil || err != nil {
		t.Errorf("Read = %+v, %v; want nil, nil", m, err)
	}
}

func TestReadRefusesAnIssuerSecretMissingKeys(t *testing.T) {
	client, _ := cluster(t, installedConfig())
	ctx := context.Background()
	secret, err := client.CoreV1().Secrets("mesh").Get(ctx, install.IssuerSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(secret.Data, identity.IssuerKeyFile)
	if _, err := client.CoreV1().Secrets("mesh").Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = installed.Read(ctx, client, "mesh")
	if err == nil || !strings.Contains(err.Error(), "Secret mesh/skein-identity-issuer: has no key tls.key") {
		t.Errorf("Read of an issuer without its key: %v", err)
	}
}

func TestReadRefusesAnchorsThatDisagree(t *testing.T) {
	client, _ := cluster(t, installedConfig())
	other, err := install.Objects(installedConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range other {
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == install.TrustAnchorsConfigMapName {
			apply(t, client, []runtime.Object{cm})
		}
	}
	_, err = installed.Read(context.Background(), client, "mesh")
	if err == nil || !strings.Contains(err.Error(), "inconsistent") {
		t.Errorf("Read with two different anchors: %v", err)
	}
}

func TestReuseRefusesOtherTrust(t *testing.T) {
	client, _ := cluster(t, installedConfig())
	m, err := installed.Read(context.Background(), client, "mesh")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := install.Objects(installedConfig())
	if err != nil {
		t.Fatal(err)
	}
	other := trust(objs) // another mesh's
	cfg := installedConfig()
	cfg.Identity = install.IdentityMaterial{
		TrustAnchorPEM: []byte(other[install.IssuerSecretName+"/"+identity.TrustAnchorFile]),
		IssuerCertPEM:  []byte(other[install.IssuerSecretName+"/"+identity.IssuerCertFile]),
		IssuerKeyPEM:   []byte(other[install.IssuerSecretName+"/"+identity.IssuerKeyFile]),
	}
	if _, err := installed.Reuse(&cfg, m); err == nil || !strings.Contains(err.Error(), "rotate the anchor instead") {
		t.Errorf("Reuse with another anchor: %v", err)
	}
	cfg = installedConfig()
	cfg.TrustDomain = "other.org"
	if _, err := installed.Reuse(&cfg, m); err == nil || !strings.Contains(err.Error(), `the mesh in namespace mesh is "example.org"`) {
		t.Errorf("Reuse with another trust domain: %v", err)
	}
	// The installation's own material is no conflict.
	cfg = installedConfig()
	cfg.Identity.TrustAnchorPEM = bytes.Clone(m.Identity.TrustAnchorPEM)
	if _, err := installed.Reuse(&cfg, m); err != nil {
		t.Errorf("Reuse with the installed anchor: %v", err)
	}
}

func TestRecordedDefaultImagesMoveToThisVersion(t *testing.T) {
	r := install.Record(installedConfig())
	r.ControllerImage, r.DefaultControllerImage = "ghcr.io/skeinmesh/skein-controller:v0.1", "ghcr.io/skeinmesh/skein-controller:v0.1"
	r.ProxyImage = "registry.example/skein-proxy:v0.1" // chosen by flag: kept
	cfg := r.Config()
	if cfg.ControllerImage != install.Default().ControllerImage || cfg.ProxyImage != "registry.example/skein-proxy:v0.1" {
		t.Errorf("images %s, %s", cfg.ControllerImage, cfg.ProxyImage)
	}
	if cfg.Namespace != "mesh" || cfg.Replicas != 2 || cfg.TrustDomain != "example.org" {
		t.Errorf("config %+v", cfg)
	}
}
