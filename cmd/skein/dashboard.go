package main

import (
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/skeinmesh/skein/internal/dashboard"
)

func newDashboardCommand() *cobra.Command {
	var api string
	var port int
	var open bool
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the web dashboard on 127.0.0.1",
		Long: `Serves the controller's web dashboard on 127.0.0.1 (--port, default a free
port) and prints its URL: overview, services, routes, the edge graph,
per-workload charts, live tap and top. The dashboard reads the
controller's metrics API (--api, as skein stat does), so its numbers are
the CLI's. Only GET requests addressed to the printed address pass. Runs
until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := newMetricsClient(api)
			if err != nil {
				return err
			}
			upstream, err := url.Parse(client.baseURL)
			if err != nil {
				return fmt.Errorf("--api %q: %w", api, err)
			}
			ctx := cmd.Context()
			ln, err := dashboard.Listen(ctx, port)
			if err != nil {
				return err
			}
			p := ln.Addr().(*net.TCPAddr).Port
			address := fmt.Sprintf("http://127.0.0.1:%d/", p)
			fmt.Fprintf(cmd.OutOrStdout(), "Skein dashboard: %s (reading %s; Ctrl-C to stop)\n", address, api)
			if open {
				if err := openBrowser(address); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "could not open a browser (%v): open %s yourself\n", err, address)
				}
			}
			return dashboard.Serve(ctx, ln, dashboard.NewHandler(upstream, client.http.Transport, p, nil))
		},
	}
	cmd.Flags().StringVar(&api, "api", defaultMetricsAPI,
		"the controller's metrics API: unix:PATH, a socket path, or an http(s):// URL")
	cmd.Flags().IntVar(&port, "port", 0, "port on 127.0.0.1 to serve on (default: a free one)")
	cmd.Flags().BoolVar(&open, "open", false, "open the dashboard in the default browser")
	return cmd
}

// openBrowser starts the system's URL opener and does not wait for it.
func openBrowser(address string) error {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	c := exec.Command(name, address)
	if err := c.Start(); err != nil {
		return err
	}
	go c.Wait() // reap it; its exit says nothing about the browser
	return nil
}
