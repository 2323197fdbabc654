package main

import (
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/controller/metricsapi"
)

func newRoutesCommand() *cobra.Command {
	var flags *metricsFlags
	cmd := &cobra.Command{
		Use:   "routes WORKLOAD | workload/NAME | service/NAME",
		Short: "Golden metrics per route of a workload or service",
		Long: `Shows success rate, requests per second and latency percentiles per route
and authority over the --since window. For a workload: the requests it
served (its proxies' inbound side); for service/NAME (or svc/NAME): what the
service's clients saw. Requests that matched no route are shown as
[default].

For a service, SUCCESS is the effective success rate (what the clients got,
after retries), ACTUAL the success rate of the first attempts (what the
backends did before any retry), and RETRY_RPS the retries sent per second.
-o wide adds retryable failures per second answered as is because the
retry budget was out (BUDGET_OUT) or the retry limit reached (LIMIT). JSON
fields (-o json) are documented in docs/cli.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flags.checkOutput(); err != nil {
				return err
			}
			param, name, err := parseRoutesTarget(args[0])
			if err != nil {
				return err
			}
			var resp metricsapi.RoutesResponse
			if err := flags.get(cmd.Context(), "/api/v1/routes", url.Values{param: {name}}, &resp); err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), resp, func(w io.Writer, wide bool) { writeRoutesTable(w, resp, wide) })
		},
	}
	flags = addMetricsFlags(cmd)
	return cmd
}

// parseRoutesTarget reads NAME, workload/NAME or service/NAME into the API
// parameter (workload or service) and the name.
func parseRoutesTarget(arg string) (param, name string, err error) {
	kind, name, found := strings.Cut(arg, "/")
	if !found {
		kind, name = "workload", arg
	}
	if name == "" {
		return "", "", fmt.Errorf("%q: no name", arg)
	}
	k, ok := statKinds[strings.ToLower(kind)]
	if !ok || k == metricsapi.KindNamespace {
		return "", "", fmt.Errorf("%q: want WORKLOAD, workload/NAME or service/NAME", arg)
	}
	return k, name, nil
}

func writeRoutesTable(w io.Writer, resp metricsapi.RoutesResponse, wide bool) {
	header := "ROUTE\tAUTHORITY\tSUCCESS\tACTUAL\tRPS\tRETRY_RPS\tLATENCY_P50\tLATENCY_P95\tLATENCY_P99"
	if wide {
		header += "\tBUDGET_OUT\tLIMIT"
	}
	fmt.Fprintln(w, header)
	for _, r := range resp.Rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", r.Route, orDash(r.Authority), formatPercent(r.SuccessRate),
			formatPercent(r.ActualSuccessRate), formatRPS(r.Golden), formatRetryRate(r.Retries, r.RetryRPS),
			formatLatency(r.LatencyP50), formatLatency(r.LatencyP95), formatLatency(r.LatencyP99))
		if wide {
			fmt.Fprintf(w, "\t%s\t%s", formatRetryRate(r.Retries, r.RetryBudgetExhaustedRPS), formatRetryRate(r.Retries, r.RetryLimitReachedRPS))
		}
		fmt.Fprintln(w)
	}
}

// formatRetryRate is a per-second retry figure, "-" for a route without
// retry figures (a workload's, or one without a policy).
func formatRetryRate(r metricsapi.Retries, rate float64) string {
	if r == (metricsapi.Retries{}) {
		return "-"
	}
	return fmt.Sprintf("%.2f", rate)
}
