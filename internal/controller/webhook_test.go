package controller

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/pki"
)

// The injector hands each proxy the trust anchors of the issuer in effect
// and the controller's address in the install namespace; it reads
// namespaces from its informer, never with a GET per pod; and it serves
// its certificate from memory, picking up a renewed one from the mounted
// Secret's directory.
func TestInjectorServesFromCachesAndFollowsItsCertificate(t *testing.T) {
	dir := t.TempDir()
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	if _, err := identity.Generate(identity.GenerateConfig{TrustDomain: td, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	issuers, err := identity.NewDirSource(dir, log, nil)
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
	certDir := t.TempDir()
	first := writeWebhookPair(t, certDir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{TrustDomain: "cluster.local", WebhookCertDir: certDir, ProxyControllerAddr: "skein-controller.other-ns.svc.cluster.local:8086"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveWebhook(ctx, ln, cfg, issuers, kube, log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveWebhook: %v", err)
		}
	})

	for range 5 {
		patch, served := postReview(t, ln.Addr().String())
		if !bytes.Equal(served, first) {
			t.Fatal("the webhook served another certificate than the one in its directory")
		}
		wantAnchor, _ := json.Marshal(string(anchor))
		for _, want := range []string{string(wantAnchor), `"SKEIN_PROXY_CONTROLLER_ADDR","value":"skein-controller.other-ns.svc.cluster.local:8086"`, `"SKEIN_PROXY_CONTROLLER_ID","value":"spiffe://cluster.local/skein/controller"`} {
			if !strings.Contains(patch, want) {
				t.Errorf("the patch lacks %s:\n%s", want, patch)
			}
		}
	}
	for _, a := range kube.Actions() {
		if a.GetResource().Resource == "namespaces" && a.GetVerb() != "list" && a.GetVerb() != "watch" {
			t.Errorf("the injector did %s on namespaces; it must read them from its informer only", a.GetVerb())
		}
	}

	// The files go: the certificate in memory still serves.
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Remove(filepath.Join(certDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, served := postReview(t, ln.Addr().String()); !bytes.Equal(served, first) {
		t.Error("without its files the webhook no longer serves the certificate it loaded")
	}
	// A renewed pair arrives: the next handshakes present it.
	second := writeWebhookPair(t, certDir)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, served := postReview(t, ln.Addr().String())
		if bytes.Equal(served, second) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the renewed webhook certificate was not picked up in 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeWebhookPair writes a new serving certificate and key into dir, each
// renamed into place, and returns the certificate's DER.
func writeWebhookPair(t *testing.T, dir string) []byte {
	t.Helper()
	pair, err := install.NewWebhookTLS("other-ns", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls.key": pair.KeyPEM, "tls.crt": pair.CertPEM} {
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	certs, err := pki.ParseCertificates(pair.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0].Raw
}

// postReview sends a pod in namespace shop for admission over a new TLS
// connection and returns the patch and the certificate the server showed.
func postReview(t *testing.T, addr string) (patch string, served []byte) {
	t.Helper()
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
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the test compares the certificate itself
		DisableKeepAlives: true,
	}}
	resp, err := client.Post("https://"+addr+"/inject", "application/json", bytes.NewReader(review))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook answered %s: %s", resp.Status, body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil || out.Response == nil || !out.Response.Allowed {
		t.Fatalf("response %s (%v)", body, err)
	}
	return string(out.Response.Patch), resp.TLS.PeerCertificates[0].Raw
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
