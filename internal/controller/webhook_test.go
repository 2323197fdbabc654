package controller

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/inject"
)

// The injector hands each proxy the trust anchors of the issuer in effect.
func TestInjectorGivesProxiesTheIssuersTrustAnchors(t *testing.T) {
	dir := t.TempDir()
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	if _, err := identity.Generate(identity.GenerateConfig{TrustDomain: td, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	issuers, err := identity.NewDirSource(dir, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	anchor, err := os.ReadFile(filepath.Join(dir, identity.TrustAnchorFile))
	if err != nil {
		t.Fatal(err)
	}
	kube := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "shop", Annotations: map[string]string{inject.AnnotationInject: inject.InjectEnabled},
	}})
	h := &injector{cfg: inject.DefaultConfig(), issuers: issuers, kube: kube, log: slog.New(slog.DiscardHandler)}

	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}},
	}
	raw, _ := json.Marshal(pod)
	review, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "shop",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		},
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(review)))
	body, _ := io.ReadAll(rec.Result().Body)
	if rec.Code != http.StatusOK {
		t.Fatalf("webhook answered %d: %s", rec.Code, body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil || out.Response == nil || !out.Response.Allowed {
		t.Fatalf("response %s (%v)", body, err)
	}
	patch := string(out.Response.Patch)
	wantEnv, _ := json.Marshal(string(anchor))
	if !strings.Contains(patch, "SKEIN_PROXY_TRUST_ANCHORS_PEM") || !strings.Contains(patch, string(wantEnv)) {
		t.Errorf("the patch does not give the proxy the issuer's trust anchor:\n%s", patch)
	}
}

// Before 1.29 the injector adds the proxy as a regular container.
func TestNativeSidecarsFollowTheServerVersion(t *testing.T) {
	for minor, want := range map[string]bool{"28": false, "29": true, "37": true} {
		kube := fake.NewClientset()
		kube.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{Major: "1", Minor: minor, GitVersion: "v1." + minor + ".0"}
		if got := nativeSidecars(kube.Discovery(), slog.New(slog.DiscardHandler)); got != want {
			t.Errorf("1.%s: native sidecars %v, want %v", minor, got, want)
		}
	}
}
