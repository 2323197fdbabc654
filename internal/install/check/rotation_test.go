package check_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	restclient "k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/pki"
)

// metricsBody is what a controller pod's /metrics says through the pod
// proxy (the trust gauges only).
type metricsBody string

func (b metricsBody) DoRaw(context.Context) ([]byte, error) { return []byte(b), nil }
func (b metricsBody) Stream(context.Context) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(b))), nil
}

var _ restclient.ResponseWrapper = metricsBody("")

// trustGauges is a controller's trust metrics: proxies in all, and for
// each anchor (fingerprint, whether the issuer chains to it) how many
// trust it and hold a certificate of it.
func trustGauges(proxies int, anchors ...anchorCount) metricsBody {
	// As a registry writes them: series sorted by their labels' values,
	// so by fingerprint, whatever ca.crt's order.
	anchors = slices.Clone(anchors)
	slices.SortFunc(anchors, func(a, b anchorCount) int { return strings.Compare(a.fp, b.fp) })
	var b strings.Builder
	fmt.Fprintf(&b, "identity_trust_bundle_proxies %d\nidentity_trust_bundle_unreported_proxies 0\n", proxies)
	for _, a := range anchors {
		fmt.Fprintf(&b, "identity_trust_anchor_proxies{anchor=%q,holds=\"trust\",issuer=\"%v\"} %d\n", a.fp, a.issuer, a.trusting)
		fmt.Fprintf(&b, "identity_trust_anchor_proxies{anchor=%q,holds=\"certificate\",issuer=\"%v\"} %d\n", a.fp, a.issuer, a.certificates)
	}
	return metricsBody(b.String())
}

type anchorCount struct {
	fp                     string
	issuer                 bool
	trusting, certificates int
}

// serveTrust makes every controller pod's /metrics answer body.
func (m *meshed) serveTrust(body metricsBody) {
	m.client.PrependProxyReactor("pods", func(k8stesting.Action) (bool, restclient.ResponseWrapper, error) {
		return true, body, nil
	})
}

// issuerAnchor is the first anchor of the issuer Secret's ca.crt, the
// one its issuer chains to.
func (m *meshed) issuerAnchor() *x509.Certificate {
	m.t.Helper()
	secret, err := m.client.CoreV1().Secrets("skein").Get(context.Background(), install.IssuerSecretName, metav1.GetOptions{})
	if err != nil {
		m.t.Fatal(err)
	}
	certs, err := pki.ParseCertificates(secret.Data[identity.TrustAnchorFile])
	if err != nil {
		m.t.Fatal(err)
	}
	return certs[0]
}

func (m *meshed) issuerFingerprint() string { return pki.Fingerprint(m.issuerAnchor()) }

// setAnchors makes the issuer Secret's ca.crt hold anchors, in order.
func (m *meshed) setAnchors(anchors ...*x509.Certificate) {
	m.t.Helper()
	secret, err := m.client.CoreV1().Secrets("skein").Get(context.Background(), install.IssuerSecretName, metav1.GetOptions{})
	if err != nil {
		m.t.Fatal(err)
	}
	secret.Data[identity.TrustAnchorFile] = pki.EncodeCertificates(anchors...)
	if _, err := m.client.CoreV1().Secrets("skein").Update(context.Background(), secret, metav1.UpdateOptions{}); err != nil {
		m.t.Fatal(err)
	}
}

func TestDataPlaneReportsWhatTheRunningProxiesTrust(t *testing.T) {
	const name = "running proxies trust the issuer's anchors and hold its certificates"
	other, _ := identitytest.NewAnchor(t, spiffeid.RequireTrustDomainFromString("cluster.local"))
	o := pki.Fingerprint(other)
	// In each case ca.crt lists the old anchor first: the issuer's (fp)
	// before the issue step, the other after it.
	tests := []struct {
		what     string
		newFirst bool // ca.crt is [other, fp]: the issue step was taken
		body     func(fp string) metricsBody
		want     func(fp string) string
	}{
		{"all on the one anchor", false, func(fp string) metricsBody {
			return trustGauges(4, anchorCount{fp, true, 4, 4})
		}, func(string) string { return "[ok] " + name }},
		{"a proxy that did not follow the bundle", false, func(fp string) metricsBody {
			return trustGauges(4, anchorCount{fp, true, 4, 4}, anchorCount{o, false, 3, 0})
		}, func(string) string { return "[FAIL] " + name + ": 3 of 4 proxies trust anchor " + o[:16] }},
		{"bundled", false, func(fp string) metricsBody {
			return trustGauges(4, anchorCount{fp, true, 4, 4}, anchorCount{o, false, 4, 0})
		}, func(string) string { return "anchor rotation under way (bundled): 4 proxies trust 2 anchors" }},
		{"issued, not all renewed", true, func(fp string) metricsBody {
			return trustGauges(4, anchorCount{o, false, 4, 1}, anchorCount{fp, true, 4, 3})
		}, func(fp string) string {
			return "[warn] " + name + ": 3 of 4 proxies hold a certificate of anchor " + fp[:16]
		}},
		{"issued, all renewed", true, func(fp string) metricsBody {
			return trustGauges(4, anchorCount{o, false, 4, 0}, anchorCount{fp, true, 4, 4})
		}, func(string) string { return "rotate drop --kubernetes` ends the rotation" }},
	}
	for _, tt := range tests {
		t.Run(tt.what, func(t *testing.T) {
			m := newMeshed(t)
			m.create(m.injected(deploymentPod("shop", "web", "a"), m.inject, ""))
			fp := m.issuerFingerprint()
			issuerAnchor := m.issuerAnchor()
			if tt.newFirst {
				m.setAnchors(other, issuerAnchor)
			} else if tt.what != "all on the one anchor" {
				m.setAnchors(issuerAnchor, other)
			}
			m.serveTrust(tt.body(fp))
			requireLines(t, m.check(""), tt.want(fp))
		})
	}
}
