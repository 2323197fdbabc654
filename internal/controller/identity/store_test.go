package identity_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/pki"
)

// The three rotation steps on a SecretStore: the Secret moves as a
// directory would, and the ConfigMap's copy of ca.crt follows each step.
func TestRotationStepsOnASecretKeepTheConfigMapEqual(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	oldKey := identitytest.NewKey(t)
	oldAnchor, _ := pki.NewTrustAnchor("cluster.local", oldKey, time.Hour, now)
	issuerKey := identitytest.NewKey(t)
	issuer, err := pki.NewIssuer("cluster.local", issuerKey, oldAnchor, oldKey, 10*time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	issuerKeyPEM, _ := pki.EncodePrivateKey(issuerKey)
	client := fake.NewClientset(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "skein", Name: "issuer"}, Data: map[string][]byte{
			"tls.crt": pki.EncodeCertificates(issuer), "tls.key": issuerKeyPEM, "ca.crt": pki.EncodeCertificates(oldAnchor),
		}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "skein", Name: "anchors"}, Data: map[string]string{
			"ca.crt": string(pki.EncodeCertificates(oldAnchor)),
		}},
	)
	store := &identity.SecretStore{Client: client, Namespace: "skein", Name: "issuer", ConfigMap: "anchors"}
	equal := func(step string, want int) {
		t.Helper()
		secret, _ := client.CoreV1().Secrets("skein").Get(ctx, "issuer", metav1.GetOptions{})
		cm, _ := client.CoreV1().ConfigMaps("skein").Get(ctx, "anchors", metav1.GetOptions{})
		if cm.Data["ca.crt"] != string(secret.Data["ca.crt"]) {
			t.Errorf("after %s, the ConfigMap's anchors differ from the Secret's", step)
		}
		if certs, err := pki.ParseCertificates(secret.Data["ca.crt"]); err != nil || len(certs) != want {
			t.Errorf("after %s, the Secret holds %d anchors (%v), want %d", step, len(certs), err, want)
		}
	}

	dir := t.TempDir()
	newCert, newKey := filepath.Join(dir, "new.crt"), filepath.Join(dir, "new.key")
	st, err := identity.BundleAnchor(ctx, store, identity.BundleConfig{NewAnchorCert: newCert, NewAnchorKey: newKey})
	if err != nil {
		t.Fatal(err)
	}
	equal("bundle", 2)
	if _, err := os.Stat(newKey); err != nil {
		t.Fatalf("the new anchor's key was not written where asked: %v", err)
	}
	newIssuer, err := identity.IssueUnderAnchor(ctx, store, newCert, newKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	if newIssuer.CheckSignatureFrom(st.NewAnchor) != nil {
		t.Error("the new issuer is not signed by the new anchor")
	}
	equal("issue", 2)
	after, dropped, err := identity.DropAnchors(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || !dropped[0].Equal(oldAnchor) || !after.IssuerAnchor.Equal(st.NewAnchor) {
		t.Errorf("drop: dropped %d, issuer anchor new %v", len(dropped), after.IssuerAnchor.Equal(st.NewAnchor))
	}
	equal("drop", 1)
}

// A Secret cert-manager writes is not edited: cert-manager would undo it.
func TestSecretStoreRefusesCertManagersSecret(t *testing.T) {
	client := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Namespace: "skein", Name: "issuer", Annotations: map[string]string{"cert-manager.io/certificate-name": "skein-issuer"},
	}})
	store := &identity.SecretStore{Client: client, Namespace: "skein", Name: "issuer"}
	_, err := identity.ReadRotationState(context.Background(), store)
	if err == nil || !strings.Contains(err.Error(), "cert-manager (Certificate skein-issuer)") {
		t.Errorf("err = %v, want a refusal naming cert-manager's Certificate", err)
	}
}
