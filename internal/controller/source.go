package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/source/files"
	"github.com/skeinmesh/skein/internal/source/kube"
)

// sourceLoadTimeout bounds the wait for the first full state.
const sourceLoadTimeout = 2 * time.Minute

// startSource starts the configured source feeding m and returns once its
// first full state is in the model, so that the controller never answers
// proxies from a half-loaded view. It returns the source's name for logs.
func startSource(ctx context.Context, cfg Config, kc kubeClientset, m *model.Model, reg prometheus.Registerer, log *slog.Logger) (string, error) {
	errc := make(chan error, 1)
	var loaded <-chan struct{}
	name := ""
	if cfg.ManifestsDir != "" {
		s, err := files.New(cfg.ManifestsDir, m, log, reg)
		if err != nil {
			return "", err
		}
		loaded, name = s.Loaded(), "manifests "+cfg.ManifestsDir
		go func() { errc <- s.Run(ctx) }()
	} else {
		s := kube.New(kc.typed, m, log, kube.WithWorkloads(kc.dynamic), kube.WithGatewayAPI(kc.gateway))
		loaded, name = s.Synced(), "kubernetes"
		go func() { errc <- s.Run(ctx) }()
	}
	select {
	case <-loaded:
		go func() {
			if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
				log.Error("source stopped", "source", name, "err", err)
			}
		}()
		return name, nil
	case err := <-errc:
		return "", fmt.Errorf("%s: %w", name, err)
	case <-time.After(sourceLoadTimeout):
		return "", fmt.Errorf("%s: not loaded after %s", name, sourceLoadTimeout)
	}
}

// kubeClientset is what the controller reads the cluster with: the typed
// client, the dynamic one (the mesh's own resources) and the Gateway API's
// (routes).
type kubeClientset struct {
	typed   kubernetes.Interface
	dynamic dynamic.Interface
	gateway gatewayclient.Interface
}

// kubeClients connect to the API server: with kubeconfig when given, else
// in-cluster. Each client keeps to cfg's QPS and burst.
func kubeClients(c Config) (kubeClientset, error) {
	var cfg *rest.Config
	var err error
	if c.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return kubeClientset{}, fmt.Errorf("kubernetes: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(c.KubeAPIQPS), c.KubeAPIBurst
	var cs kubeClientset
	if cs.typed, err = kubernetes.NewForConfig(cfg); err != nil {
		return kubeClientset{}, fmt.Errorf("kubernetes: %w", err)
	}
	if cs.dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return kubeClientset{}, fmt.Errorf("kubernetes: %w", err)
	}
	if cs.gateway, err = gatewayclient.NewForConfig(cfg); err != nil {
		return kubeClientset{}, fmt.Errorf("kubernetes: %w", err)
	}
	return cs, nil
}
