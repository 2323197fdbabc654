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
[default]. -o wide prints the same columns as the table. JSON fields (-o
json) are documented in docs/cli.md.`,
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
			return flags.print(cmd.OutOrStdout(), resp, func(w io.Writer, _ bool) { writeRoutesTable(w, resp) })
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

func writeRoutesTable(w io.Writer, resp metricsapi.RoutesResponse) {
	fmt.Fprintln(w, "ROUTE\tAUTHORITY\tSUCCESS\tRPS\tLATENCY_P50\tLATENCY_P95\tLATENCY_P99")
	for _, r := range resp.Rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Route, orDash(r.Authority), formatPercent(r.SuccessRate),
			formatRPS(r.Golden), formatLatency(r.LatencyP50), formatLatency(r.LatencyP95), formatLatency(r.LatencyP99))
	}
}
