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
	index := map[string]int{}
	for _, m := range families[trustAnchorMetric].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		fp := labels["anchor"]
		i, ok := index[fp]
		if !ok {
			i = len(out.Anchors)
			index[fp] = i
			out.Anchors = append(out.Anchors, AnchorSummary{Fingerprint: fp, Issuer: labels["issuer"] == "true"})
		}
		switch n := int(valueOf(m)); labels["holds"] {
		case "trust":
			out.Anchors[i].Trusting = n
		case "certificate":
			out.Anchors[i].Certificates = n
		}
	}
	return out, nil
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
	position := func(fp string) int {
		for i, a := range anchors {
			if pki.Fingerprint(a) == fp {
				return i
			}
		}
		return len(anchors)
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
	index := map[string]int{}
	for _, s := range sums {
		out.Proxies += s.Proxies
		out.Unreported += s.Unreported
		for _, a := range s.Anchors {
			i, ok := index[a.Fingerprint]
			if !ok {
				i = len(out.Anchors)
				index[a.Fingerprint] = i
				out.Anchors = append(out.Anchors, AnchorSummary{Fingerprint: a.Fingerprint})
			}
			out.Anchors[i].Issuer = out.Anchors[i].Issuer || a.Issuer
			out.Anchors[i].Trusting += a.Trusting
			out.Anchors[i].Certificates += a.Certificates
		}
	}
	return out
}
