package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/inject"
	"github.com/skeinmesh/skein/internal/pki"
)

// injector is the admission webhook with the trust anchors of the issuer in
// effect at each request: a pod is injected with the anchors its proxy
// must trust.
type injector struct {
	cfg     inject.Config
	issuers identity.IssuerSource
	kube    kubernetes.Interface
	log     *slog.Logger
}

func (i *injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := i.cfg
	issuer := i.issuers.Issuer()
	if issuer == nil {
		http.Error(w, "no issuer loaded yet", http.StatusServiceUnavailable)
		return
	}
	cfg.TrustAnchorsPEM = string(pki.EncodeCertificates(issuer.TrustAnchors()...))
	inject.NewWebhook(cfg, i.kube.CoreV1().Namespaces(), i.log).ServeHTTP(w, r)
}

// nativeSidecars reports whether the cluster runs native sidecars; where
// it does not (before 1.29), the injector adds the proxy as the first
// regular container, which the application's containers wait for.
func nativeSidecars(d discovery.ServerVersionInterface, log *slog.Logger) bool {
	v, err := d.ServerVersion()
	if err != nil {
		log.Warn("cannot read the Kubernetes version; injecting the proxy as a native sidecar", "err", err)
		return true
	}
	if !inject.SupportsNativeSidecars(v.Major, v.Minor) {
		log.Warn("Kubernetes "+v.GitVersion+" has no native sidecars by default: injecting the proxy as a regular container", "version", v.GitVersion)
		return false
	}
	return true
}

// serveWebhook serves the injector on cfg.WebhookAddr until ctx ends.
func serveWebhook(ctx context.Context, ln net.Listener, cfg Config, issuers identity.IssuerSource, kube kubernetes.Interface, log *slog.Logger) error {
	icfg := inject.DefaultConfig()
	icfg.TrustDomain = cfg.TrustDomain
	icfg.ControllerAddr = cfg.ProxyControllerAddr
	if cfg.ProxyImage != "" {
		icfg.ProxyImage = cfg.ProxyImage
	}
	icfg.NativeSidecars = nativeSidecars(kube.Discovery(), log)
	mux := http.NewServeMux()
	mux.Handle("/inject", &injector{cfg: icfg, issuers: issuers, kube: kube, log: log})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12, // the API server's client
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				cert, err := tls.LoadX509KeyPair(filepath.Join(cfg.WebhookCertDir, "tls.crt"), filepath.Join(cfg.WebhookCertDir, "tls.key"))
				if err != nil {
					return nil, fmt.Errorf("webhook certificate: %w", err)
				}
				return &cert, nil
			},
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("injector webhook: %w", err)
		}
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
