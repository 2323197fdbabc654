package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/inject"
	"github.com/skeinmesh/skein/internal/pki"
)

// injector is the admission webhook with the trust anchors of the issuer in
// effect at each request: a pod is injected with the anchors its proxy
// must trust.
type injector struct {
	cfg        inject.Config
	issuers    identity.IssuerSource
	namespaces inject.NamespaceLister // an informer's cache
	log        *slog.Logger
}

func (i *injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := i.cfg
	issuer := i.issuers.Issuer()
	if issuer == nil {
		http.Error(w, "no issuer loaded yet", http.StatusServiceUnavailable)
		return
	}
	cfg.TrustAnchorsPEM = string(pki.EncodeCertificates(issuer.TrustAnchors()...))
	inject.NewWebhook(cfg, i.namespaces, i.log).ServeHTTP(w, r)
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

// serveWebhook serves the injector on cfg.WebhookAddr until ctx ends. The
// namespaces it reads come from an informer (no API call per pod), and its
// serving certificate from memory, reloaded when the mounted Secret changes.
func serveWebhook(ctx context.Context, ln net.Listener, cfg Config, issuers identity.IssuerSource, kube kubernetes.Interface, log *slog.Logger) error {
	cert, err := loadWebhookCert(cfg.WebhookCertDir, log)
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(kube, 0)
	namespaces := factory.Core().V1().Namespaces()
	lister, hasSynced := namespaces.Lister(), namespaces.Informer().HasSynced
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if err := cert.Run(ctx); err != nil {
			log.Error("not following the webhook certificate", "err", err)
		}
	})
	if !cache.WaitForCacheSync(ctx.Done(), hasSynced) {
		return nil // ctx is done
	}

	icfg := inject.DefaultConfig()
	icfg.TrustDomain = cfg.TrustDomain
	icfg.ControllerAddr = cfg.ProxyControllerAddr
	if cfg.ProxyImage != "" {
		icfg.ProxyImage = cfg.ProxyImage
	}
	icfg.NativeSidecars = nativeSidecars(kube.Discovery(), log)
	mux := http.NewServeMux()
	mux.Handle("/inject", &injector{cfg: icfg, issuers: issuers, namespaces: lister, log: log})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12, // the API server's client
			GetCertificate: cert.get,
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
