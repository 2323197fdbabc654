package destination

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type serverMetrics struct {
	activeStreams  prometheus.Gauge
	streamsRefused prometheus.Counter
	updatesSent    *prometheus.CounterVec
}

func newServerMetrics(reg prometheus.Registerer) (*serverMetrics, error) {
	m := &serverMetrics{
		activeStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skein_destination_active_streams",
			Help: "Destination streams open now, one per proxy and destination.",
		}),
		streamsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_destination_streams_refused_total",
			Help: "Destination streams refused because their client already held the most it may (RESOURCE_EXHAUSTED).",
		}),
		updatesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_destination_updates_sent_total",
			Help: "Destination updates sent to proxies, by kind (snapshot, add, remove, does_not_exist).",
		}, []string{"kind"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.activeStreams, m.streamsRefused, m.updatesSent} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}
