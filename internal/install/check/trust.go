package check

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/pki"
)

// expiryWarning is how long before an issuer or webhook certificate expires
// that check starts warning.
const expiryWarning = 14 * 24 * time.Hour

// checkTrust checks the issuer Secret and that the trust-anchors ConfigMap
// holds the anchor it chains to.
func (c *Checker) checkTrust(ctx context.Context) []Result {
	const issuerName, anchorsName = "identity issuer is valid", "trust anchors match the issuer"
	issuerHint := fmt.Sprintf("the controller reads secret %s/%s (tls.crt, tls.key, ca.crt): rotate it with `skein identity issuer`, or check the external issuer (cert-manager)",
		c.Namespace, install.IssuerSecretName)
	secret, err := c.getSecret(ctx, install.IssuerSecretName)
	if err != nil {
		return []Result{failed(issuerName, issuerHint, "%v", err)}
	}
	issuer, err := identity.ParseIssuer(secret.Data[identity.IssuerCertFile], secret.Data[identity.IssuerKeyFile], secret.Data[identity.TrustAnchorFile], c.now())
	if err != nil {
		return []Result{failed(issuerName, issuerHint, "secret %s: %v", install.IssuerSecretName, err)}
	}
	results := []Result{expiring(issuerName, issuer.Certificate(), c.now(), "rotate the issuer: `skein identity issuer`")}

	anchorsHint := fmt.Sprintf("put the issuer's trust anchor (ca.crt) in configmap %s/%s; proxies trust only what it holds", c.Namespace, install.TrustAnchorsConfigMapName)
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(callCtx, install.TrustAnchorsConfigMapName, metav1.GetOptions{})
	if err != nil {
		return append(results, failed(anchorsName, anchorsHint, "%v", err))
	}
	anchors, err := pki.ParseCertificates([]byte(cm.Data[identity.TrustAnchorFile]))
	if err != nil {
		return append(results, failed(anchorsName, anchorsHint, "configmap %s %s: %v", install.TrustAnchorsConfigMapName, identity.TrustAnchorFile, err))
	}
	for _, want := range issuer.TrustAnchors() {
		if containsCert(anchors, want) {
			return append(results, ok(anchorsName))
		}
	}
	return append(results, failed(anchorsName, anchorsHint, "configmap %s holds none of the issuer's trust anchors: proxies would refuse every certificate", install.TrustAnchorsConfigMapName))
}

func (c *Checker) getSecret(ctx context.Context, name string) (*corev1.Secret, error) {
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.Client.CoreV1().Secrets(c.Namespace).Get(callCtx, name, metav1.GetOptions{})
}

// checkWebhook checks that the webhook configuration sends pods to the
// controller and trusts the certificate the controller serves it with.
func (c *Checker) checkWebhook(ctx context.Context) Result {
	const name = "proxy injector webhook is configured"
	hint := "apply the manifests again: `skein install | kubectl apply -f -`, then restart the controller (kubectl -n " + c.Namespace + " rollout restart deployment " + install.ControllerName + ")"
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	mwc, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(callCtx, install.WebhookConfigurationName, metav1.GetOptions{})
	if err != nil {
		return failed(name, hint, "%v", err)
	}
	var caBundle []byte
	found := false
	for _, wh := range mwc.Webhooks {
		if wh.Name != install.WebhookName {
			continue
		}
		found = true
		svc := wh.ClientConfig.Service
		if svc == nil || svc.Namespace != c.Namespace || svc.Name != install.ControllerName {
			return failed(name, hint, "webhook %s does not call service %s/%s", wh.Name, c.Namespace, install.ControllerName)
		}
		caBundle = wh.ClientConfig.CABundle
	}
	if !found {
		return failed(name, hint, "%s has no webhook %s", install.WebhookConfigurationName, install.WebhookName)
	}
	if len(caBundle) == 0 {
		return failed(name, hint, "webhook %s has an empty caBundle", install.WebhookName)
	}
	secret, err := c.getSecret(ctx, install.WebhookSecretName)
	if err != nil {
		return failed(name, hint, "%v", err)
	}
	certPEM := secret.Data[corev1.TLSCertKey]
	if err := install.VerifyWebhookTLS(caBundle, certPEM, secret.Data[corev1.TLSPrivateKeyKey], install.WebhookDNSName(c.Namespace), c.now()); err != nil {
		return failed(name, hint, "secret %s: %v", install.WebhookSecretName, err)
	}
	certs, _ := pki.ParseCertificates(certPEM) // parsed fine just above
	return expiring(name, certs[0], c.now(), hint)
}

// expiring is ok, or a warning when cert expires soon.
func expiring(name string, cert *x509.Certificate, now time.Time, hint string) Result {
	if left := cert.NotAfter.Sub(now); left < expiryWarning {
		return warned(name, hint, "certificate %q expires in %s (%s)", cert.Subject.CommonName, left.Round(time.Hour), cert.NotAfter.Format(time.RFC3339))
	}
	return ok(name)
}

func containsCert(certs []*x509.Certificate, cert *x509.Certificate) bool {
	for _, c := range certs {
		if bytes.Equal(c.Raw, cert.Raw) {
			return true
		}
	}
	return false
}
