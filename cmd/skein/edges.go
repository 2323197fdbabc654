package main

import (
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/controller/metricsapi"
)

func newEdgesCommand() *cobra.Command {
	var flags *metricsFlags
	cmd := &cobra.Command{
		Use:   "edges",
		Short: "Who calls whom, and whether over mTLS",
		Long: `Shows every caller → callee pair of workloads with traffic in the --since
window (with -n: pairs where either side is in that namespace): whether the
connection is secured by mesh mTLS, requests per second and success rate.
-o wide adds CLIENT_ID (the caller's identity, as the callee's proxies
verified it) and SERVER_ID (the callee's identity, as the caller's proxy
verified it). JSON fields (-o json) are documented in docs/cli.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flags.checkOutput(); err != nil {
				return err
			}
			var resp metricsapi.EdgesResponse
			if err := flags.get(cmd.Context(), "/api/v1/edges", url.Values{}, &resp); err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), resp, func(w io.Writer, wide bool) { writeEdgesTable(w, resp, wide) })
		},
	}
	flags = addMetricsFlags(cmd)
	return cmd
}

func writeEdgesTable(w io.Writer, resp metricsapi.EdgesResponse, wide bool) {
	header := []string{"SRC", "DST", "SRC_NS", "DST_NS", "SECURED", "SUCCESS", "RPS"}
	if wide {
		header = append(header, "CLIENT_ID", "SERVER_ID")
	}
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, e := range resp.Rows {
		secured := "yes"
		if e.TLS != "true" {
			secured = "no (" + e.TLS + ")"
		}
		cells := []string{e.SrcWorkload, e.DstWorkload, e.SrcNamespace, e.DstNamespace, secured,
			formatPercent(e.SuccessRate), formatRPS(metricsapi.Golden{RPS: e.RPS, SuccessRate: e.SuccessRate})}
		if wide {
			cells = append(cells, orDash(e.ClientID), orDash(e.ServerID))
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
