package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/controller/authzapi"
	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/inbound"
	"github.com/skeinmesh/skein/internal/controller/metricsapi"
	"github.com/skeinmesh/skein/internal/controller/tapapi"
	"github.com/skeinmesh/skein/internal/controller/web"
	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/model"
)

// modelInventory answers the metrics API's questions about workloads from
// the model.
type modelInventory struct{ m *model.Model }

func (i modelInventory) Workloads(namespace string) []metricsapi.WorkloadInfo {
	var out []metricsapi.WorkloadInfo
	for _, w := range i.m.Workloads(namespace) {
		info := metricsapi.WorkloadInfo{
			Namespace: w.Namespace, Name: w.Name, Replicas: w.Instances, Meshed: w.Meshed, Ready: w.Ready, ServiceAccount: w.ServiceAccount,
		}
		for _, r := range w.Replicas {
			info.Instances = append(info.Instances, metricsapi.InstanceInfo{Name: r.Name, Meshed: r.Meshed, Ready: r.Ready})
		}
		out = append(out, info)
	}
	return out
}

// metricsAPIListeners opens the metrics API's listeners: a unix socket
// (only root and the socket's group may use it) and/or a TCP address.
func metricsAPIListeners(ctx context.Context, cfg Config) ([]net.Listener, error) {
	var lns []net.Listener
	var lc net.ListenConfig
	if cfg.APISocket != "" {
		os.Remove(cfg.APISocket) // left by a controller that crashed
		ln, err := lc.Listen(ctx, "unix", cfg.APISocket)
		if err != nil {
			return nil, fmt.Errorf("api-socket: %w", err)
		}
		if err := os.Chmod(cfg.APISocket, 0o660); err != nil {
			ln.Close()
			return nil, fmt.Errorf("api-socket: %w", err)
		}
		lns = append(lns, ln)
	}
	if cfg.APIAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", cfg.APIAddr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("api-addr: %w", err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// serveMetricsAPI serves the metrics API on lns until ctx ends.
// The authorization API (skein authz) and the dashboard (skein dashboard)
// are served beside it. So is the tap API, which calls the proxies with
// the controller's own certificate from ids.
func serveMetricsAPI(ctx context.Context, lns []net.Listener, cfg Config, m *model.Model, examples metricsapi.MirrorExamples, inb *inbound.Server, ids *identity.Service, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	az := authzapi.Config{Policy: inb, Log: log}
	if cfg.PrometheusURL == "" {
		// Tap, authz and trust answer without Prometheus; golden metrics
		// cannot.
		mux.HandleFunc("/api/", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"error":"this controller runs without -prometheus-url: golden metrics need Prometheus (skein install --prometheus-url)"}`)
		})
	} else {
		mux.Handle("/api/", metricsapi.NewHandler(metricsapi.Config{
			PrometheusURL:  cfg.PrometheusURL,
			Inventory:      modelInventory{m},
			MirrorExamples: examples,
			Log:            log,
		}))
		if client, err := api.NewClient(api.Config{Address: cfg.PrometheusURL}); err == nil {
			az.Prometheus = promv1.NewAPI(client)
		}
	}
	authzapi.Register(mux, az)
	mux.Handle("/api/v1/trust", ids.TrustHandler())
	self := meshid.Controller(spiffeid.RequireTrustDomainFromString(cfg.TrustDomain))
	tapapi.Register(mux, tapapi.Config{
		Model: m,
		TLS: func(proxyID string) (*tls.Config, error) {
			id, err := spiffeid.FromString(proxyID)
			if err != nil {
				return nil, fmt.Errorf("proxy identity %q: %w", proxyID, err)
			}
			return ids.ClientTLS(self, id), nil
		},
		Log: log,
	})
	// No WriteTimeout: tap answers stream until the client leaves.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ConnContext: tapapi.ConnContext}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- srv.Serve(ln) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			srv.Close()
			return fmt.Errorf("metrics API: %w", err)
		}
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
