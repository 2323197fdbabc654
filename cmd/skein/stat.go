package main

import (
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/controller/metricsapi"
)

// statKinds maps what a user may type to the API's kind.
var statKinds = map[string]string{
	"workload": metricsapi.KindWorkload, "workloads": metricsapi.KindWorkload,
	"deploy": metricsapi.KindWorkload, "deployment": metricsapi.KindWorkload, "deployments": metricsapi.KindWorkload,
	"service": metricsapi.KindService, "services": metricsapi.KindService, "svc": metricsapi.KindService,
	"namespace": metricsapi.KindNamespace, "namespaces": metricsapi.KindNamespace, "ns": metricsapi.KindNamespace,
	"pod": metricsapi.KindPod, "pods": metricsapi.KindPod, "po": metricsapi.KindPod,
}

func newStatCommand() *cobra.Command {
	var flags *metricsFlags
	cmd := &cobra.Command{
		Use:   "stat [workload|service|namespace|pod]",
		Short: "Golden metrics per workload, service, namespace or pod",
		Long: `Shows, per workload (the default), service, namespace or pod (replica): how
many instances are meshed (and, except for services, ready: passing their
readiness probe, so endpoints), the success rate, requests per second and
latency percentiles over the --since window, from Prometheus through the
controller's metrics API.

Workloads, namespaces and pods: what they served (their proxies' inbound
side). Services: what the service's clients saw (their outbound side).
"-" means no requests in the window. -o wide adds TCP_CONN (open TCP
connections). JSON fields (-o json) are documented in docs/cli.md.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flags.checkOutput(); err != nil {
				return err
			}
			kind := metricsapi.KindWorkload
			if len(args) == 1 {
				k, ok := statKinds[strings.ToLower(args[0])]
				if !ok {
					return fmt.Errorf("unknown kind %q (want workload, service, namespace or pod)", args[0])
				}
				kind = k
			}
			var resp metricsapi.StatResponse
			if err := flags.get(cmd.Context(), "/api/v1/stat", url.Values{"kind": {kind}}, &resp); err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), resp, func(w io.Writer, wide bool) {
				writeStatTable(w, resp, flags.namespace == "" && kind != metricsapi.KindNamespace, wide)
			})
		},
	}
	flags = addMetricsFlags(cmd)
	return cmd
}

func writeStatTable(w io.Writer, resp metricsapi.StatResponse, withNamespace, wide bool) {
	// Readiness is the workloads': a service's row counts the endpoints
	// its clients reached.
	withReady := resp.Kind != metricsapi.KindService
	header := []string{"NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99"}
	if withReady {
		header = slices.Insert(header, 2, "READY")
	}
	pods := resp.Kind == metricsapi.KindPod
	if pods {
		header = slices.Insert(header, 1, "WORKLOAD")
	}
	if withNamespace {
		header = append([]string{"NAMESPACE"}, header...)
	}
	if wide {
		header = append(header, "TCP_CONN")
	}
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, r := range resp.Rows {
		cells := []string{r.Name, formatMeshed(r.Meshed, r.Total), formatPercent(r.SuccessRate), formatRPS(r.Golden),
			formatLatency(r.LatencyP50), formatLatency(r.LatencyP95), formatLatency(r.LatencyP99)}
		if withReady {
			cells = slices.Insert(cells, 2, formatReady(r.Ready, r.Total))
		}
		if pods {
			cells = slices.Insert(cells, 1, r.Workload)
		}
		if withNamespace {
			cells = append([]string{r.Namespace}, cells...)
		}
		if wide {
			cells = append(cells, fmt.Sprint(r.TCPConnections))
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
}
