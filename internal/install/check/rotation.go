package check

import (
	"bytes"
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/pki"
)

// ControllerTrust adds up what the proxies report to every running
// controller pod in namespace (each counts the proxies whose trust-bundle
// stream it holds), read from the pods' admin /metrics through the API
// server's pod proxy, its anchors in the issuer Secret's ca.crt order:
// what `skein identity rotate --kubernetes` checks before each step and
// `skein check --proxy` reports.
func ControllerTrust(ctx context.Context, client kubernetes.Interface, namespace string) (identity.TrustSummary, error) {
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pods, err := client.CoreV1().Pods(namespace).List(callCtx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(install.ControllerSelector).String()})
	if err != nil {
		return identity.TrustSummary{}, fmt.Errorf("listing the controller's pods in %s: %w", namespace, err)
	}
	var sums []identity.TrustSummary
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
			continue
		}
		body, err := client.CoreV1().Pods(namespace).ProxyGet("http", pod.Name, install.AdminProxyPort, "/metrics", nil).DoRaw(callCtx)
		if err != nil {
			return identity.TrustSummary{}, fmt.Errorf("reading controller pod %s/%s's metrics through the API server: %w", namespace, pod.Name, err)
		}
		sum, err := identity.ParseTrustMetrics(bytes.NewReader(body))
		if err != nil {
			return identity.TrustSummary{}, fmt.Errorf("controller pod %s/%s: %w", namespace, pod.Name, err)
		}
		sums = append(sums, sum)
	}
	if len(sums) == 0 {
		return identity.TrustSummary{}, fmt.Errorf("no running controller pod in %s", namespace)
	}
	sum := identity.MergeTrustSummaries(sums...)
	secret, err := client.CoreV1().Secrets(namespace).Get(callCtx, install.IssuerSecretName, metav1.GetOptions{})
	if err != nil {
		return sum, fmt.Errorf("reading the issuer secret %s/%s: %w", namespace, install.IssuerSecretName, err)
	}
	anchors, err := pki.ParseCertificates(secret.Data[identity.TrustAnchorFile])
	if err != nil {
		return sum, fmt.Errorf("secret %s/%s %s: %w", namespace, install.IssuerSecretName, identity.TrustAnchorFile, err)
	}
	sum.OrderAnchors(anchors)
	return sum, nil
}

// checkProxyTrust reports what the running proxies trust and hold, as
// their controllers count it: during an anchor rotation, which step it is
// at and what the next one waits for.
func (c *Checker) checkProxyTrust(ctx context.Context) Result {
	const name = "running proxies trust the issuer's anchors and hold its certificates"
	sum, err := ControllerTrust(ctx, c.Client, c.Namespace)
	if err != nil {
		return warned(name, "you need to be allowed to get pods/proxy in "+c.Namespace, "cannot read what the proxies report: %v", err)
	}
	var issuer *identity.AnchorSummary
	for i, a := range sum.Anchors {
		if a.Trusting < sum.Proxies-sum.Unreported {
			return failed(name, "the controller sends its anchors to every proxy within a second of a change; a proxy that does not follow is not connected to it: see the proxy's log",
				"%d of %d proxies trust anchor %s", a.Trusting, sum.Proxies-sum.Unreported, a.Fingerprint[:16])
		}
		if a.Issuer {
			issuer = &sum.Anchors[i]
		}
	}
	rotating := len(sum.Anchors) > 1
	switch {
	case issuer == nil:
		return warned(name, "skein check (without --proxy) checks the issuer", "the controllers report no anchor the issuer chains to")
	case issuer.Certificates < sum.Proxies-sum.Unreported:
		return warned(name, "after `skein identity rotate issue` proxies renew within 10 s; drop the old anchor only once all have",
			"%d of %d proxies hold a certificate of anchor %s, the issuer's", issuer.Certificates, sum.Proxies-sum.Unreported, issuer.Fingerprint[:16])
	case rotating && issuer.Fingerprint == sum.Anchors[len(sum.Anchors)-1].Fingerprint:
		return warned(name, "every proxy is on the new anchor: `skein identity rotate drop --kubernetes` ends the rotation",
			"anchor rotation under way (issued): %d proxies on the new anchor %s", sum.Proxies, issuer.Fingerprint[:16])
	case rotating:
		return warned(name, "every proxy trusts the new anchor: `skein identity rotate issue --kubernetes` is next",
			"anchor rotation under way (bundled): %d proxies trust %d anchors", sum.Proxies, len(sum.Anchors))
	case sum.Unreported > 0:
		return warned(name, "a proxy reports once it has its certificate and the controller's anchors", "%d of %d proxies have not reported yet", sum.Unreported, sum.Proxies)
	}
	return ok(name)
}
