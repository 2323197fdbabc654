package main

import (
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/controller/metricsapi"
)

func newDiffCommand() *cobra.Command {
	var flags *metricsFlags
	cmd := &cobra.Command{
		Use:   "diff [service/NAME | route NAME]",
		Short: "How mirrored requests' answers compared with the primary's",
		Long: `Shows, per route and mirror backend, how the answers of mirrored requests
(a route's RequestMirror filter) compared with the primary's over the
--since window: matches, mismatches (status, the compared header fields or
the body differ), errors (no answer to compare), dropped (over the proxy's
cap on mirrors in flight) and skipped (a request body over 64 KiB), and a
few recent mismatches with their header values redacted and the first 256
bytes of each body. With service/NAME: the routes mirroring requests to
that Service; with route NAME (or route/NAME): that HTTPRoute or GRPCRoute;
with neither: every route of the namespace (-n, default "default"). JSON
fields (-o json) are documented in docs/cli.md.`,
		Args: cobra.RangeArgs(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := flags.checkOutput(); err != nil {
				return err
			}
			params, err := parseDiffTarget(args)
			if err != nil {
				return err
			}
			if flags.namespace == "" {
				flags.namespace = "default"
			}
			var resp metricsapi.DiffResponse
			if err := flags.get(cmd.Context(), "/api/v1/diff", params, &resp); err != nil {
				return err
			}
			return flags.print(cmd.OutOrStdout(), resp, func(w io.Writer, _ bool) { writeDiffTable(w, resp) })
		},
	}
	flags = addMetricsFlags(cmd)
	return cmd
}

// parseDiffTarget reads the arguments into the API's parameters: none,
// service/NAME (svc/NAME), route/NAME or "route NAME".
func parseDiffTarget(args []string) (url.Values, error) {
	if len(args) == 0 {
		return url.Values{}, nil
	}
	kind, name, found := strings.Cut(args[0], "/")
	if len(args) == 2 {
		if found || kind != "route" {
			return nil, fmt.Errorf("%q: want service/NAME, route/NAME or route NAME", strings.Join(args, " "))
		}
		name, found = args[1], true
	}
	if !found || name == "" {
		return nil, fmt.Errorf("%q: want service/NAME, route/NAME or route NAME", strings.Join(args, " "))
	}
	switch strings.ToLower(kind) {
	case "service", "svc":
		return url.Values{"service": {name}}, nil
	case "route", "httproute", "grpcroute":
		return url.Values{"route": {name}}, nil
	}
	return nil, fmt.Errorf("%q: want service/NAME, route/NAME or route NAME", strings.Join(args, " "))
}

func writeDiffTable(w io.Writer, resp metricsapi.DiffResponse) {
	fmt.Fprintln(w, "ROUTE\tBACKEND\tMATCH\tMISMATCH\tMISMATCH_RATE\tERROR\tDROPPED\tSKIPPED")
	for _, r := range resp.Rows {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%d\t%d\t%d\n", r.Route, r.Backend, r.Match, r.Mismatch,
			formatPercent(r.MismatchRate), r.Error, r.Dropped, r.Skipped)
	}
	for _, r := range resp.Rows {
		if len(r.Examples) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nrecent mismatches of %s -> %s (newest first):\n", r.Route, r.Backend)
		for _, ex := range r.Examples {
			differs := ""
			if ex.BodyDiffers {
				differs = "  body differs"
			}
			fmt.Fprintf(w, "  %s  %s %q  status %d vs %d%s\n", ex.Time.UTC().Format(time.RFC3339), ex.Method, ex.Path,
				ex.PrimaryStatus, ex.MirrorStatus, differs)
			for _, h := range ex.Headers {
				fmt.Fprintf(w, "    %s: %q vs %q\n", h.Name, h.Primary, h.Mirror)
			}
			fmt.Fprintf(w, "    primary body: %q\n    mirror body:  %q\n", ex.PrimaryBody, ex.MirrorBody)
		}
	}
}
