package identity

import (
	"cmp"
	"crypto/x509"
	"fmt"
	"io"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/skeinmesh/skein/internal/pki"
)

// The trust summary as metrics, on the controller's admin /metrics: what
// `skein identity rotate --kubernetes` reads from every controller replica
// (each counts the proxies connected to it) through the API server's pod
// proxy, and what an alert on a rotation that stalls can use. Labels are
// the anchors of the controller's own ca.crt: as many as it holds.
const (
	trustProxiesMetric    = "identity_trust_bundle_proxies"
	trustUnreportedMetric = "identity_trust_bundle_unreported_proxies"
	trustAnchorMetric     = "identity_trust_anchor_proxies"
)

var (
	trustProxiesDesc = prometheus.NewDesc(trustProxiesMetric,
		"Proxies with an open trust-bundle stream to this controller.", nil, nil)
	trustUnreportedDesc = prometheus.NewDesc(trustUnreportedMetric,
		"Proxies with an open trust-bundle stream that have not reported what they trust yet.", nil, nil)
	trustAnchorDesc = prometheus.NewDesc(trustAnchorMetric,
		"Proxies of this controller that trust an anchor of its ca.crt (holds=trust), or whose certificate chains to it (holds=certificate); issuer says whether the issuer in effect chains to it.",
		[]string{"anchor", "issuer", "holds"}, nil)
)

// trustCollector exports a Service's TrustSummary at each scrape.
type trustCollector struct{ s *Service }

func (c trustCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- trustProxiesDesc
	ch <- trustUnreportedDesc
	ch <- trustAnchorDesc
}

func (c trustCollector) Collect(ch chan<- prometheus.Metric) {
	sum := c.s.TrustSummary()
	ch <- prometheus.MustNewConstMetric(trustProxiesDesc, prometheus.GaugeValue, float64(sum.Proxies))
	ch <- prometheus.MustNewConstMetric(trustUnreportedDesc, prometheus.GaugeValue, float64(sum.Unreported))
	for _, a := range sum.Anchors {
		issuer := fmt.Sprint(a.Issuer)
		ch <- prometheus.MustNewConstMetric(trustAnchorDesc, prometheus.GaugeValue, float64(a.Trusting), a.Fingerprint, issuer, "trust")
		ch <- prometheus.MustNewConstMetric(trustAnchorDesc, prometheus.GaugeValue, float64(a.Certificates), a.Fingerprint, issuer, "certificate")
	}
}

// ParseTrustMetrics reads the TrustSummary of one controller from its
// /metrics text.
func ParseTrustMetrics(r io.Reader) (TrustSummary, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return TrustSummary{}, fmt.Errorf("reading the controller's metrics: %w", err)
	}
	proxies, unreported := families[trustProxiesMetric], families[trustUnreportedMetric]
	if proxies == nil || unreported == nil {
		return TrustSummary{}, fmt.Errorf("the controller's metrics have no %s: a controller older than anchor rotation on Kubernetes?", trustProxiesMetric)
	}
	out := TrustSummary{Proxies: gaugeOf(proxies), Unreported: gaugeOf(unreported)}
	for _, m := range families[trustAnchorMetric].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		a := out.anchor(labels["anchor"])
		a.Issuer = labels["issuer"] == "true"
		switch n := int(valueOf(m)); labels["holds"] {
		case "trust":
			a.Trusting = n
		case "certificate":
			a.Certificates = n
		}
	}
	return out, nil
}

// anchor is s's count of the anchor fp, added at the end when s has none.
// A summary holds as many anchors as a ca.crt: a scan is enough.
func (s *TrustSummary) anchor(fp string) *AnchorSummary {
	i := slices.IndexFunc(s.Anchors, func(a AnchorSummary) bool { return a.Fingerprint == fp })
	if i < 0 {
		s.Anchors = append(s.Anchors, AnchorSummary{Fingerprint: fp})
		i = len(s.Anchors) - 1
	}
	return &s.Anchors[i]
}

func gaugeOf(f *dto.MetricFamily) int {
	if len(f.GetMetric()) == 0 {
		return 0
	}
	return int(valueOf(f.GetMetric()[0]))
}

// valueOf is a gauge's value, or an untyped sample's (text without a
// TYPE line).
func valueOf(m *dto.Metric) float64 {
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return m.GetUntyped().GetValue()
}

// OrderAnchors sorts s.Anchors as anchors (ca.crt) lists them, those it
// does not list last: what the controllers' /metrics say comes sorted by
// fingerprint, not in ca.crt's order, which tells the old anchor from the
// new.
func (s *TrustSummary) OrderAnchors(anchors []*x509.Certificate) {
	fingerprints := make([]string, len(anchors))
	for i, a := range anchors {
		fingerprints[i] = pki.Fingerprint(a)
	}
	position := func(fp string) int {
		if i := slices.Index(fingerprints, fp); i >= 0 {
			return i
		}
		return len(fingerprints)
	}
	slices.SortStableFunc(s.Anchors, func(a, b AnchorSummary) int {
		return cmp.Compare(position(a.Fingerprint), position(b.Fingerprint))
	})
}

// MergeTrustSummaries adds up what several controller replicas report:
// each proxy holds its trust-bundle stream to one of them. An anchor is
// the issuer's when any replica says so (a replica that has not loaded
// the change yet says otherwise for a moment).
func MergeTrustSummaries(sums ...TrustSummary) TrustSummary {
	var out TrustSummary
	for _, s := range sums {
		out.Proxies += s.Proxies
		out.Unreported += s.Unreported
		for _, a := range s.Anchors {
			merged := out.anchor(a.Fingerprint)
			merged.Issuer = merged.Issuer || a.Issuer
			merged.Trusting += a.Trusting
			merged.Certificates += a.Certificates
		}
	}
	return out
}
