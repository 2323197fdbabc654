package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/controller/authzapi"
	"github.com/skeinmesh/skein/internal/controller/inbound"
)

// authzFlags are the flags every authz command takes.
type authzFlags struct {
	api       string
	namespace string
	output    string
}

func addAuthzFlags(cmd *cobra.Command, f *authzFlags) {
	cmd.PersistentFlags().StringVar(&f.api, "api", defaultMetricsAPI, "the controller's API: unix:PATH, a socket path, or an http(s):// URL")
	cmd.PersistentFlags().StringVarP(&f.namespace, "namespace", "n", "", "namespace (explain: the target's; default: every namespace)")
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", outputTable, "output format: table or json")
}

func (f *authzFlags) call(ctx context.Context, method, path string, params url.Values, body []byte, v any) error {
	if f.output != outputTable && f.output != outputJSON {
		return fmt.Errorf("unknown output format %q (want table or json)", f.output)
	}
	client, err := newMetricsClient(f.api)
	if err != nil {
		return err
	}
	return client.do(ctx, method, path, params, body, v)
}

func newAuthzCommand() *cobra.Command {
	f := &authzFlags{}
	cmd := &cobra.Command{
		Use:   "authz [WORKLOAD]",
		Short: "Authorization policy: each Server, its policies and who may call it",
		Long: `Lists each Server (of -n NAMESPACE, selecting WORKLOAD when given) with the
workloads it selects, its access policy for what nothing authorizes, the
AuthorizationPolicies that apply to it (on the Server, its namespace or its
routes) and who they let in; then each workload's default policy for ports
no Server selects, and where that default comes from. Invalid policy
objects (whose last good version stays in force) are listed last. JSON
fields (-o json) are documented in docs/cli.md.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			params := url.Values{"namespace": {f.namespace}}
			if len(args) == 1 {
				params.Set("workload", args[0])
			}
			var resp authzapi.ListResponse
			if err := f.call(cmd.Context(), http.MethodGet, "/api/v1/authz", params, nil, &resp); err != nil {
				return err
			}
			return printOutput(cmd.OutOrStdout(), f.output, resp, func(w io.Writer) { writeAuthzTable(w, resp) })
		},
	}
	addAuthzFlags(cmd, f)
	cmd.AddCommand(newAuthzExplainCommand(f), newAuthzSimulateCommand(f))
	return cmd
}

func writeAuthzTable(w io.Writer, resp authzapi.ListResponse) {
	fmt.Fprintln(w, "SERVER\tPORT\tWORKLOADS\tACCESS\tPOLICY\tROUTE\tALLOWS")
	for _, s := range resp.Servers {
		name := s.Namespace + "/" + s.Name
		workloads := orDash(strings.Join(s.Workloads, ","))
		if len(s.Authorizations) == 0 && len(s.Routes) == 0 {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t-\t-\t-\n", name, s.Port, workloads, s.AccessPolicy)
		}
		for _, a := range s.Authorizations {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t-\t%s\n", name, s.Port, workloads, s.AccessPolicy, a.Name, allows(a))
		}
		for _, r := range s.Routes {
			if len(r.Authorizations) == 0 {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t-\t%s\t-\n", name, s.Port, workloads, s.AccessPolicy, r.Name)
			}
			for _, a := range r.Authorizations {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, s.Port, workloads, s.AccessPolicy, a.Name, r.Name, allows(a))
			}
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "WORKLOAD\tDEFAULT\tFROM")
	for _, d := range resp.Defaults {
		fmt.Fprintf(w, "%s/%s\t%s\t%s\n", d.Namespace, d.Workload, d.DefaultPolicy, d.From)
	}
	for _, e := range resp.Invalid {
		fmt.Fprintf(w, "\ninvalid (last good version in force): %s\n", e)
	}
}

// allows says who an authorization lets in, in one cell.
func allows(a inbound.AuthorizationView) string {
	var parts []string
	ids := append(append([]string{}, a.Identities...), a.IdentityPrefixes...)
	for i, p := range a.IdentityPrefixes {
		ids[len(a.Identities)+i] = p + "*"
	}
	if len(ids) > 0 {
		parts = append(parts, "mTLS "+strings.Join(ids, ","))
	}
	if len(a.Networks) > 0 {
		parts = append(parts, "from "+strings.Join(a.Networks, ","))
	}
	return orDash(strings.Join(parts, " and "))
}

func newAuthzExplainCommand(f *authzFlags) *cobra.Command {
	var from, to, path, method string
	cmd := &cobra.Command{
		Use:   "explain --from IDENTITY|CIDR --to WORKLOAD:PORT [--path P --method M]",
		Short: "How the live policy decides one request, and why",
		Long: `Evaluates the controller's live authorization policy for one client
(--from: a SPIFFE ID for a meshed client, an IP address or CIDR for an
unmeshed one) calling WORKLOAD:PORT in -n NAMESPACE, with the same decision
the proxies make, and prints which Server, route, policy or default
allows or denies it and why. --path/--method evaluate an HTTP request
(per-route policy); without them, a connection. JSON fields (-o json) are
documented in docs/cli.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			params := url.Values{"namespace": {f.namespace}, "from": {from}, "to": {to}, "path": {path}, "method": {method}}
			var resp authzapi.ExplainResponse
			if err := f.call(cmd.Context(), http.MethodGet, "/api/v1/authz/explain", params, nil, &resp); err != nil {
				return err
			}
			return printOutput(cmd.OutOrStdout(), f.output, resp, func(w io.Writer) {
				verdict := "DENY"
				switch {
				case resp.Allowed && resp.Audit:
					verdict = "ALLOW (audit: would deny)"
				case resp.Allowed:
					verdict = "ALLOW"
				}
				fmt.Fprintf(w, "%s\t%s -> %s/%s:%d (pod %s)\n", verdict, resp.From, resp.Namespace, resp.Workload, resp.Port, resp.Pod)
				fmt.Fprintf(w, "server:\t%s\n", orDash(resp.Server))
				fmt.Fprintf(w, "route:\t%s\n", orDash(resp.Route))
				fmt.Fprintf(w, "authorization:\t%s\n", orDash(resp.Authorization))
				fmt.Fprintf(w, "default policy:\t%s\n", orDash(resp.Default))
				fmt.Fprintf(w, "reason:\t%s\n", resp.Reason)
			})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the client: a SPIFFE ID, an IP address or a CIDR")
	cmd.Flags().StringVar(&to, "to", "", "the target: WORKLOAD:PORT in -n NAMESPACE")
	cmd.Flags().StringVar(&path, "path", "", "an HTTP request's path")
	cmd.Flags().StringVar(&method, "method", "", "an HTTP request's method (default GET with --path)")
	return cmd
}

func newAuthzSimulateCommand(f *authzFlags) *cobra.Command {
	var file, since string
	cmd := &cobra.Command{
		Use:   "simulate -f NEW-POLICY.yaml",
		Short: "Which of the last minutes' inbound edges a proposed policy would deny",
		Long: `Replays the inbound edges of the --since window (from the proxies' counters
in Prometheus: each workload port's HTTP requests and opaque connections by
client identity) through the proposed policy objects of -f merged with the
live ones, and lists the edges it would deny, with the live and proposed
decision of each. Nothing is applied. Unmeshed clients' addresses are not
counted, so they are replayed without one. JSON fields (-o json) are
documented in docs/cli.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f: required: a file of Servers, AuthorizationPolicies, MeshTLSAuthentications, NetworkAuthentications")
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			params := url.Values{"since": {since}, "file": {filepath.Base(file)}}
			var resp authzapi.SimulateResponse
			if err := f.call(cmd.Context(), http.MethodPost, "/api/v1/authz/simulate", params, data, &resp); err != nil {
				return err
			}
			return printOutput(cmd.OutOrStdout(), f.output, resp, func(w io.Writer) {
				fmt.Fprintln(w, "WORKLOAD\tPORT\tKIND\tCLIENT\tCOUNT\tLIVE\tPROPOSED\tREASON")
				for _, e := range resp.Edges {
					client := e.ClientID
					if client == "" {
						client = "(unmeshed)"
					}
					fmt.Fprintf(w, "%s/%s\t%d\t%s\t%s\t%.0f\t%s\t%s\t%s\n", e.Namespace, e.Workload, e.Port, e.Kind, client, e.Count,
						verdict(e.Live), verdict(e.Proposed), e.Proposed.Reason)
				}
				fmt.Fprintf(w, "\n%d of %d edges of the last %s would be denied\n", len(resp.Edges), resp.Replayed, resp.Since)
			})
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "the proposed policy (YAML)")
	cmd.Flags().StringVar(&since, "since", authzapi.DefaultSimulateSince, "traffic window to replay")
	return cmd
}

func verdict(d authzapi.Decision) string {
	switch {
	case d.Allowed && d.Audit:
		return "audit"
	case d.Allowed:
		return "allow"
	}
	return "deny"
}
