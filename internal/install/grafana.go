package install

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// GrafanaDashboardsConfigMapName is the ConfigMap that carries Skein's
// Grafana dashboards when asked for (`skein install --grafana-dashboards`).
const GrafanaDashboardsConfigMapName = "skein-grafana-dashboards"

// GrafanaDashboardLabel is the label Grafana's dashboard sidecar (the
// Grafana Helm chart, kube-prometheus-stack) looks for on ConfigMaps.
const GrafanaDashboardLabel = "grafana_dashboard"

// grafanaDashboards is the ConfigMap of cfg.GrafanaDashboards, one key per
// file, each compacted (the sidecar writes the key as a file; Grafana
// reads it whatever its spacing), so that the whole, and the copy
// `kubectl apply` keeps in its last-applied annotation, stay well under
// the API's limits.
func grafanaDashboards(cfg Config) (*corev1.ConfigMap, error) {
	names := make([]string, 0, len(cfg.GrafanaDashboards))
	for name := range cfg.GrafanaDashboards {
		names = append(names, name)
	}
	sort.Strings(names)
	data := make(map[string]string, len(names))
	for _, name := range names {
		var b bytes.Buffer
		if err := json.Compact(&b, cfg.GrafanaDashboards[name]); err != nil {
			return nil, fmt.Errorf("grafana dashboard %s: %w", name, err)
		}
		data[name] = b.String()
	}
	meta := objectMeta(cfg, GrafanaDashboardsConfigMapName)
	meta.Labels[GrafanaDashboardLabel] = "1"
	return &corev1.ConfigMap{TypeMeta: typeMeta("v1", "ConfigMap"), ObjectMeta: meta, Data: data}, nil
}
