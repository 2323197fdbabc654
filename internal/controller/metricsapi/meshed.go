package metricsapi

import (
	"context"
	"fmt"

	"github.com/prometheus/common/model"
)

// meshedCount is how many of a row's instances run a proxy and how many
// are ready (nil: not known), with the row's grouping labels (as
// statSpec.by names them).
type meshedCount struct {
	labels        model.Metric
	meshed, total int
	ready         *int
}

// meshedCounts counts meshed instances per row of kind.
//
// Workloads: the inventory's counts where it knows the workload; otherwise
// the number of distinct pods Prometheus has proxy series from (all of them
// meshed, since only proxies report; how many are ready is not known).
// Namespaces: the sum of their workloads (ready known only when it is for
// every one of them). Services: the distinct endpoints (dst_pod) clients
// sent requests to, and how many of those over mTLS. Pods: see podCounts.
func (s *server) meshedCounts(ctx context.Context, in instant, kind, namespace string) ([]meshedCount, error) {
	switch kind {
	case KindService:
		return in.serviceEndpointCounts(ctx, namespace)
	case KindPod:
		return s.podCounts(ctx, in, namespace)
	}
	workloads, err := s.workloadCounts(ctx, in, namespace)
	if err != nil {
		return nil, err
	}
	if kind == KindWorkload {
		return workloads, nil
	}
	byNamespace := make(map[string]*meshedCount)
	var out []meshedCount
	for _, w := range workloads {
		ns := string(w.labels["namespace"])
		c, ok := byNamespace[ns]
		if !ok {
			c = &meshedCount{labels: model.Metric{"namespace": model.LabelValue(ns)}, ready: new(int)}
			byNamespace[ns] = c
		}
		c.meshed += w.meshed
		c.total += w.total
		if c.ready != nil && w.ready != nil {
			*c.ready += *w.ready
		} else {
			c.ready = nil
		}
	}
	for _, c := range byNamespace {
		out = append(out, *c)
	}
	return out, nil
}

func (s *server) workloadCounts(ctx context.Context, in instant, namespace string) ([]meshedCount, error) {
	known := make(map[string]bool)
	var out []meshedCount
	for _, w := range s.inventory.Workloads(namespace) {
		labels := model.Metric{"namespace": model.LabelValue(w.Namespace), "workload": model.LabelValue(w.Name)}
		known[groupKey(labels, []string{"namespace", "workload"})] = true
		out = append(out, meshedCount{labels: labels, meshed: w.Meshed, total: w.Replicas, ready: &w.Ready})
	}
	// Every proxy opens or accepts connections soon after it starts, so
	// tcp_open_total is the series most likely to exist for each one.
	ms := []matcher{ne("workload", "")}
	if namespace != "" {
		ms = append(ms, eq("namespace", namespace))
	}
	vec, err := in.vector(ctx, fmt.Sprintf("count by (namespace, workload) (count by (namespace, workload, pod) (%s))",
		selector("tcp_open_total", ms...)))
	if err != nil {
		return nil, err
	}
	for _, sample := range vec {
		if known[groupKey(sample.Metric, []string{"namespace", "workload"})] {
			continue
		}
		n := int(sample.Value)
		out = append(out, meshedCount{labels: sample.Metric, meshed: n, total: n})
	}
	return out, nil
}

func (in instant) serviceEndpointCounts(ctx context.Context, namespace string) ([]meshedCount, error) {
	ms := []matcher{eq("direction", "outbound"), ne("dst_service", "")}
	if namespace != "" {
		ms = append(ms, eq("dst_namespace", namespace))
	}
	by := []string{"dst_namespace", "dst_service"}
	query := func(ms []matcher) string {
		return fmt.Sprintf("count by (dst_namespace, dst_service) (count by (dst_namespace, dst_service, dst_pod) (%s))",
			selector("response_total", ms...))
	}
	all, err := in.vector(ctx, query(ms))
	if err != nil {
		return nil, err
	}
	secured, err := in.vector(ctx, query(with(ms, eq("tls", "true"))))
	if err != nil {
		return nil, err
	}
	meshed := make(map[string]int)
	for _, sample := range secured {
		meshed[groupKey(sample.Metric, by)] = int(sample.Value)
	}
	out := make([]meshedCount, 0, len(all))
	for _, sample := range all {
		out = append(out, meshedCount{labels: sample.Metric, meshed: meshed[groupKey(sample.Metric, by)], total: int(sample.Value)})
	}
	return out, nil
}

// podCounts is one count per replica: the inventory's replicas (1 of 1,
// meshed or not, ready or not), then every pod Prometheus has proxy series
// from that the inventory does not list (meshed; readiness not known).
func (s *server) podCounts(ctx context.Context, in instant, namespace string) ([]meshedCount, error) {
	by := []string{"namespace", "workload", "pod"}
	known := make(map[string]bool)
	var out []meshedCount
	for _, w := range s.inventory.Workloads(namespace) {
		for _, r := range w.Instances {
			labels := model.Metric{"namespace": model.LabelValue(w.Namespace), "workload": model.LabelValue(w.Name), "pod": model.LabelValue(r.Name)}
			known[groupKey(labels, by)] = true
			c := meshedCount{labels: labels, total: 1, ready: new(0)}
			if r.Meshed {
				c.meshed = 1
			}
			if r.Ready {
				*c.ready = 1
			}
			out = append(out, c)
		}
	}
	ms := []matcher{ne("workload", ""), ne("pod", "")}
	if namespace != "" {
		ms = append(ms, eq("namespace", namespace))
	}
	vec, err := in.vector(ctx, fmt.Sprintf("count %s (%s)", byClause(by), selector("tcp_open_total", ms...)))
	if err != nil {
		return nil, err
	}
	for _, sample := range vec {
		if !known[groupKey(sample.Metric, by)] {
			out = append(out, meshedCount{labels: sample.Metric, meshed: 1, total: 1})
		}
	}
	return out, nil
}
