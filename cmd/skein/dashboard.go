package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinmesh/skein/internal/dashboard"
	"github.com/skeinmesh/skein/internal/install"
)

// dashboardFlags are skein dashboard's flags.
type dashboardFlags struct {
	api         string
	port        int
	open        bool
	kube        bool
	kubeconfig  string
	kubeContext string
	namespace   string
}

func newDashboardCommand() *cobra.Command {
	f := &dashboardFlags{}
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the web dashboard on 127.0.0.1",
		Long: `Serves the controller's web dashboard on 127.0.0.1 (--port, default a free
port) and prints its URL: overview, services, routes, the edge graph,
per-workload charts, live tap and top. The dashboard reads the
controller's metrics API, so its numbers are the CLI's: in skein up the
API's unix socket (--api, as skein stat); with --kubernetes a controller
pod's API (installed with --prometheus-url) through a port-forward, as
kubectl port-forward makes. Only GET requests addressed to the printed
address pass. Runs until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run(cmd) },
	}
	cmd.Flags().StringVar(&f.api, "api", defaultMetricsAPI,
		"the controller's metrics API: unix:PATH, a socket path, or an http(s):// URL")
	cmd.Flags().IntVar(&f.port, "port", 0, "port on 127.0.0.1 to serve on (default: a free one)")
	cmd.Flags().BoolVar(&f.open, "open", false, "open the dashboard in the default browser")
	cmd.Flags().BoolVar(&f.kube, "kubernetes", false, "reach the controller on Kubernetes through a port-forward instead of --api")
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "with --kubernetes: kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	cmd.Flags().StringVar(&f.kubeContext, "context", "", "with --kubernetes: kubeconfig context (default: the current one)")
	cmd.Flags().StringVar(&f.namespace, "namespace", install.Default().Namespace, "with --kubernetes: namespace of the control plane")
	return cmd
}

func (f *dashboardFlags) run(cmd *cobra.Command) error {
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	upstream, transport, source, forwardDone, err := f.upstream(ctx)
	if err != nil {
		return err
	}
	ln, err := dashboard.Listen(ctx, f.port)
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	address := fmt.Sprintf("http://127.0.0.1:%d/", port)
	fmt.Fprintf(cmd.OutOrStdout(), "Skein dashboard: %s (reading %s; Ctrl-C to stop)\n", address, source)
	if f.open {
		if err := openBrowser(address); err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "could not open a browser (%v): open %s yourself\n", err, address)
		}
	}
	served := make(chan error, 1)
	go func() { served <- dashboard.Serve(ctx, ln, dashboard.NewHandler(upstream, transport, port, nil)) }()
	select {
	case err := <-served:
		return err
	case err := <-forwardDone: // nil channel without --kubernetes
		cancel()
		<-served
		if ctx.Err() != nil && cmd.Context().Err() != nil {
			return nil
		}
		return fmt.Errorf("the port-forward to the controller ended: %v", err)
	}
}

// upstream is where the dashboard's requests go: the --api (a unix
// socket or URL), or a port-forward to a controller pod.
func (f *dashboardFlags) upstream(ctx context.Context) (*url.URL, http.RoundTripper, string, <-chan error, error) {
	if !f.kube {
		client, err := newMetricsClient(f.api)
		if err != nil {
			return nil, nil, "", nil, err
		}
		u, err := url.Parse(client.baseURL)
		if err != nil {
			return nil, nil, "", nil, fmt.Errorf("--api %q: %w", f.api, err)
		}
		return u, client.http.Transport, f.api, nil, nil
	}
	config, err := loadKubeconfig(f.kubeconfig, f.kubeContext)
	if err != nil {
		return nil, nil, "", nil, err
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, nil, "", nil, err
	}
	pod, err := dashboard.ControllerPod(ctx, client, f.namespace, install.ControllerSelector)
	if err != nil {
		return nil, nil, "", nil, err
	}
	local, done, err := dashboard.PortForward(ctx, config, f.namespace, pod, install.APIPort)
	if err != nil {
		return nil, nil, "", nil, fmt.Errorf("port-forward to the controller's API: %w", err)
	}
	return &url.URL{Scheme: "http", Host: local}, nil, fmt.Sprintf("pod %s/%s port %d", f.namespace, pod, install.APIPort), done, nil
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
