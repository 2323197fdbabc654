// Package installed reads the Skein installation a cluster has: its
// namespace, recorded configuration and trust (issuer, anchors, join-token
// key, webhook certificate), and fills an install.Config from it, so that
// `skein install` run again, `skein upgrade` and `skein inject` keep the
// trust every running proxy was injected with instead of making new.
package installed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/pki"
)

// Mesh is what the cluster holds of one installation.
type Mesh struct {
	Namespace string
	// Recorded is the configuration the install recorded (skein-config);
	// nil when it recorded none (a skein from before the record).
	Recorded *install.Recorded
	// Identity is the trust found: the issuer (generate mode), the
	// anchors, the join-token key. Fields not found are empty.
	Identity install.IdentityMaterial
	// IssuerFound says the issuer Secret exists (in external mode it is
	// kept by cert-manager or the user, and not rendered).
	IssuerFound bool
	// Webhook is the injector's serving certificate, empty when absent.
	Webhook install.WebhookTLS
	// ProxyImage is the image the running injector adds ("" when the
	// controller Deployment is missing).
	ProxyImage string
}

// timeout bounds each API call.
const timeout = 10 * time.Second

// FindNamespace returns the namespace Skein is installed in, read from the
// injector's webhook configuration (cluster-scoped, one per cluster), ""
// when the cluster has none.
func FindNamespace(ctx context.Context, client kubernetes.Interface) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.WebhookConfigurationName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the webhook configuration %s: %w", install.WebhookConfigurationName, err)
	}
	for _, h := range w.Webhooks {
		if h.Name == install.WebhookName && h.ClientConfig.Service != nil {
			return h.ClientConfig.Service.Namespace, nil
		}
	}
	return "", fmt.Errorf("webhook configuration %s has no webhook %s calling a Service", install.WebhookConfigurationName, install.WebhookName)
}

// Read returns the installation in namespace, nil when the namespace holds
// none of Skein's trust or configuration. It fails when what it finds is
// inconsistent: a Secret without its keys, an issuer that does not chain
// to its anchors, anchors that differ between the issuer Secret and the
// ConfigMap proxies are injected from.
func Read(ctx context.Context, client kubernetes.Interface, namespace string) (*Mesh, error) {
	m := &Mesh{Namespace: namespace}
	found := false
	get := func(name string, secret bool) (map[string][]byte, error) {
		callCtx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if secret {
			s, err := client.CoreV1().Secrets(namespace).Get(callCtx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			found = true
			return s.Data, nil
		}
		c, err := client.CoreV1().ConfigMaps(namespace).Get(callCtx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		found = true
		data := map[string][]byte{}
		for k, v := range c.Data {
			data[k] = []byte(v)
		}
		return data, nil
	}
	var errs []error
	read := func(name string, secret bool, use func(map[string][]byte) error) {
		data, err := get(name, secret)
		if apierrors.IsNotFound(err) {
			return
		}
		kind := "ConfigMap"
		if secret {
			kind = "Secret"
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("reading %s %s/%s: %w", kind, namespace, name, err))
			return
		}
		if err := use(data); err != nil {
			errs = append(errs, fmt.Errorf("%s %s/%s: %w", kind, namespace, name, err))
		}
	}

	read(install.ConfigConfigMapName, false, func(data map[string][]byte) error {
		text := map[string]string{}
		for k, v := range data {
			text[k] = string(v)
		}
		r, err := install.ParseRecorded(text)
		if err != nil {
			return err
		}
		m.Recorded = &r
		return nil
	})
	var issuerAnchors, configMapAnchors []byte
	read(install.IssuerSecretName, true, func(data map[string][]byte) error {
		cert, key, anchors, err := keys(data, identity.IssuerCertFile, identity.IssuerKeyFile, identity.TrustAnchorFile)
		if err != nil {
			return err
		}
		if _, err := identity.ParseIssuer(cert, key, anchors, time.Now()); err != nil {
			return err
		}
		m.IssuerFound, issuerAnchors = true, anchors
		m.Identity.IssuerCertPEM, m.Identity.IssuerKeyPEM = cert, key
		return nil
	})
	read(install.TrustAnchorsConfigMapName, false, func(data map[string][]byte) error {
		anchors, err := key(data, identity.TrustAnchorFile)
		if err != nil {
			return err
		}
		if _, err := pki.ParseCertificates(anchors); err != nil {
			return fmt.Errorf("%s: %w", identity.TrustAnchorFile, err)
		}
		configMapAnchors = anchors
		return nil
	})
	read(install.JoinTokenKeySecretName, true, func(data map[string][]byte) error {
		k, err := key(data, identity.JoinTokenKeyFile)
		if err != nil {
			return err
		}
		if _, err := pki.ParsePrivateKey(k); err != nil {
			return fmt.Errorf("%s: %w", identity.JoinTokenKeyFile, err)
		}
		m.Identity.JoinTokenKeyPEM = k
		return nil
	})
	read(install.WebhookSecretName, true, func(data map[string][]byte) error {
		cert, k, ca, err := keys(data, corev1.TLSCertKey, corev1.TLSPrivateKeyKey, "ca.crt")
		if err != nil {
			return err
		}
		// An expired or foreign webhook certificate breaks no proxy: it
		// is made anew rather than refused.
		if install.VerifyWebhookTLS(ca, cert, k, install.WebhookDNSName(namespace), time.Now()) == nil {
			m.Webhook = install.WebhookTLS{CACertPEM: ca, CertPEM: cert, KeyPEM: k}
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if !found {
		return nil, nil
	}
	switch {
	case issuerAnchors != nil && configMapAnchors != nil && !sameCertificates(issuerAnchors, configMapAnchors):
		return nil, fmt.Errorf("the issuer Secret %s/%s trusts anchors %s but the ConfigMap %s holds %s: the installation is inconsistent (an anchor rotation not finished?); make them agree before installing again",
			namespace, install.IssuerSecretName, Fingerprints(issuerAnchors), install.TrustAnchorsConfigMapName, Fingerprints(configMapAnchors))
	case issuerAnchors != nil:
		m.Identity.TrustAnchorPEM = issuerAnchors
	default:
		m.Identity.TrustAnchorPEM = configMapAnchors
	}
	m.ProxyImage, _ = proxyImage(ctx, client, namespace) // best effort: the Deployment may be rolling or gone
	return m, nil
}

// proxyImage is the image the running injector adds to pods.
func proxyImage(ctx context.Context, client kubernetes.Interface, namespace string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d, err := client.AppsV1().Deployments(namespace).Get(ctx, install.ControllerName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, env := range c.Env {
			if env.Name == install.ProxyImageEnv {
				return env.Value, nil
			}
		}
	}
	return "", nil
}

func key(data map[string][]byte, name string) ([]byte, error) {
	v := data[name]
	if len(v) == 0 {
		return nil, fmt.Errorf("has no key %s (or it is empty)", name)
	}
	return v, nil
}

func keys(data map[string][]byte, a, b, c string) (va, vb, vc []byte, err error) {
	var errs []error
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{a, &va}, {b, &vb}, {c, &vc}} {
		v, err := key(data, f.name)
		errs = append(errs, err)
		*f.dst = v
	}
	return va, vb, vc, errors.Join(errs...)
}

// Fingerprints names the certificates in pemData by the SHA-256 of their
// DER, shortened, joined with "+"; "(unparsable)" when they do not parse.
func Fingerprints(pemData []byte) string {
	certs, err := pki.ParseCertificates(pemData)
	if err != nil {
		return "(unparsable)"
	}
	var out string
	for i, c := range certs {
		sum := sha256.Sum256(c.Raw)
		if i > 0 {
			out += "+"
		}
		out += "sha256:" + hex.EncodeToString(sum[:8])
	}
	return out
}

// sameCertificates reports whether two PEM bundles hold the same
// certificates in the same order, however their text is laid out (the
// chart writes a ConfigMap's PEM with its own line ends).
func sameCertificates(a, b []byte) bool {
	ca, errA := pki.ParseCertificates(a)
	cb, errB := pki.ParseCertificates(b)
	if errA != nil || errB != nil {
		return bytes.Equal(a, b)
	}
	return slices.EqualFunc(ca, cb, func(x, y *x509.Certificate) bool { return x.Equal(y) })
}
