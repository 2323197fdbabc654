package identity

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	issued  prometheus.Counter
	refused *prometheus.CounterVec
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
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.issued, m.refused} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering identity metrics: %w", err)
		}
	}
	return m, nil
}
