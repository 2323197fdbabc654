package identity

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	issued   prometheus.Counter
	refused  *prometheus.CounterVec
	duration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "identity_certificates_issued_total",
			Help: "Workload certificates issued by the identity service.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "identity_certificates_refused_total",
			Help: "Certify requests refused, by gRPC status code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "identity_certify_duration_seconds",
			Help:    "Time to answer a Certify request, issued or refused (the token check, a TokenReview on Kubernetes, included).",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.issued, m.refused, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering identity metrics: %w", err)
		}
	}
	return m, nil
}
