package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"time"

	"github.com/skeinmesh/skein/internal/atomicfile"
)

// prometheusConfig scrapes every proxy listed in targets.json, and the
// controller's admin port (its own metrics: streams, certificates, policy;
// what the Grafana control-plane dashboard shows). The proxies' own labels
// (namespace, workload, pod) are kept as they are.
const prometheusConfig = `global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
- job_name: skein-proxy
  honor_labels: true
  file_sd_configs:
  - files: [%q]
    refresh_interval: 5s
- job_name: skein-controller
  static_configs:
  - targets: [%q]
`

// prometheusWanted says whether a prometheus binary is there to run.
func (m *Mesh) prometheusWanted() bool {
	_, err := exec.LookPath("prometheus")
	return err == nil
}

// startPrometheus runs Prometheus in its own host, scraping the proxies.
func (m *Mesh) startPrometheus(ctx context.Context) error {
	if m.prometheus == nil {
		m.log.Warn("no prometheus binary on PATH: metrics are not stored, and skein stat has nothing to show (scripts/setup.sh installs it)")
		return nil
	}
	targets := m.path(prometheusDir, "targets.json")
	if err := atomicfile.Write(targets, []byte("[]"), 0o644); err != nil {
		return err
	}
	config := m.path(prometheusDir, "prometheus.yml")
	if err := atomicfile.Write(config, fmt.Appendf(nil, prometheusConfig, targets,
		net.JoinHostPort(m.controller.IP.String(), fmt.Sprint(controllerAdminPort))), 0o644); err != nil {
		return err
	}
	bin, _ := exec.LookPath("prometheus")
	h := m.prometheus
	proc, err := startProcess("prometheus", m.logPath("prometheus"), true, m.log, func() *exec.Cmd {
		return h.Command(context.Background(), bin,
			"--config.file="+config,
			"--storage.tsdb.path="+m.path(prometheusDir, "data"),
			"--storage.tsdb.retention.time=6h",
			fmt.Sprintf("--web.listen-address=%s", net.JoinHostPort(h.IP.String(), fmt.Sprint(prometheusPort))))
	})
	if err != nil {
		return err
	}
	m.system = append(m.system, proc)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return waitFor(wctx, "prometheus ready", func() error {
		return httpOK(h, fmt.Sprintf("http://%s:%d/-/ready", h.IP, prometheusPort))
	})
}

// writeTargets lists every running proxy for Prometheus; the caller holds
// m.mu.
func (m *Mesh) writeTargets() error {
	if m.prometheus == nil {
		return nil
	}
	var addrs []string
	for _, r := range m.workloads {
		for _, in := range r.instances {
			if in.proxy != nil {
				addrs = append(addrs, net.JoinHostPort(in.host.IP.String(), fmt.Sprint(proxyAdminPort)))
			}
		}
	}
	b, err := json.Marshal([]map[string]any{{"targets": addrs, "labels": map[string]string{}}})
	if err != nil {
		return err
	}
	return atomicfile.Write(m.path(prometheusDir, "targets.json"), b, 0o644)
}
