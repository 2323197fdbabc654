package mesh

import "testing"

func TestGaugeValueReadsOnlyTheNamedMetric(t *testing.T) {
	exposition := []byte(`# HELP skein_manifests_last_reload_success_timestamp_seconds When the manifest directory was last applied.
# TYPE skein_manifests_last_reload_success_timestamp_seconds gauge
skein_manifests_last_reload_success_timestamp_seconds_extra 7
skein_manifests_last_reload_success_timestamp_seconds 1.7960710099903173e+09
skein_manifests_last_reload_successful 1
`)
	if v, ok := gaugeValue(exposition, appliedMetric); !ok || v != 1.7960710099903173e+09 {
		t.Errorf("gaugeValue(%s) = %v, %v; want 1.7960710099903173e+09, true", appliedMetric, v, ok)
	}
	if v, ok := gaugeValue(exposition, "skein_manifests"); ok {
		t.Errorf("gaugeValue of a name that is only a prefix = %v, want not found", v)
	}
	if v, ok := gaugeValue([]byte(appliedMetric+" not-a-number\n"), appliedMetric); ok {
		t.Errorf("gaugeValue of a malformed value = %v, want not found", v)
	}
}
