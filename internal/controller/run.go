package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinmesh/skein/internal/admin"
	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/controller/destination"
	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/inbound"
	"github.com/skeinmesh/skein/internal/controller/mirrordiff"
	"github.com/skeinmesh/skein/internal/controller/policy"
	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/model"
)

// Run serves until ctx ends. Everything is validated and loaded before
// anything listens: a bad config, manifest or issuer fails here, whole.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid controller config: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	td := spiffeid.RequireTrustDomainFromString(cfg.TrustDomain)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var clients kubeClientset
	if cfg.Kubernetes {
		var err error
		if clients, err = kubeClients(cfg); err != nil {
			return err
		}
	}
	kube := clients.typed
	m := model.New(model.WithTrustDomain(cfg.TrustDomain))
	src, err := startSource(ctx, cfg, clients, m, reg, log)
	if err != nil {
		return err
	}
	idService, issuers, err := identityService(ctx, cfg, td, kube, reg, log)
	if err != nil {
		return err
	}
	dest, err := destination.NewServer(m, log, reg, destination.Limits{MaxStreamsPerPeer: cfg.MaxDestinationStreamsPerPeer})
	if err != nil {
		return err
	}
	// A proxy holds one policy stream beside each destination stream: the
	// same cap applies, counted apart.
	pol, err := policy.NewServer(log, reg, cfg.MaxDestinationStreamsPerPeer)
	if err != nil {
		return err
	}
	pol.Start(ctx, m)
	inb, err := inbound.NewServer(inbound.Config{DefaultPolicy: authz.DefaultPolicy(cfg.DefaultInboundPolicy), ClusterNetworks: cfg.ClusterNetworks}, log, reg, cfg.MaxDestinationStreamsPerPeer)
	if err != nil {
		return err
	}
	inb.Start(ctx, m)
	pol.SetInbound(inb)

	var lc net.ListenConfig
	grpcLn, err := lc.Listen(ctx, "tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc-addr: %w", err)
	}
	adminLn, err := lc.Listen(ctx, "tcp", cfg.AdminAddr)
	if err != nil {
		grpcLn.Close()
		return fmt.Errorf("admin-addr: %w", err)
	}
	apiLns, err := metricsAPIListeners(ctx, cfg)
	if err != nil {
		grpcLn.Close()
		adminLn.Close()
		return err
	}
	var webhookLn net.Listener
	if cfg.WebhookAddr != "" {
		if webhookLn, err = lc.Listen(ctx, "tcp", cfg.WebhookAddr); err != nil {
			grpcLn.Close()
			adminLn.Close()
			for _, l := range apiLns {
				l.Close()
			}
			return fmt.Errorf("webhook-addr: %w", err)
		}
	}
	srv := newGRPCServer(cfg, idService.ServerTLS(meshid.Controller(td)))
	dest.Register(srv)
	pol.Register(srv)
	idService.Register(srv)
	mirrorExamples := mirrordiff.NewStore()
	mirrordiff.NewServer(mirrorExamples).Register(srv)

	var wg sync.WaitGroup
	errc := make(chan error, 5)
	var ready atomic.Bool
	if webhookLn != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serveWebhook(ctx, webhookLn, cfg, issuers, kube, log); err != nil {
				errc <- err
			}
		}()
	}
	if len(apiLns) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serveMetricsAPI(ctx, apiLns, cfg, m, mirrorExamples, inb, idService, log); err != nil {
				errc <- err
			}
		}()
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := issuers.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			errc <- fmt.Errorf("watching the issuer: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := srv.Serve(grpcLn); err != nil {
			errc <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		err := admin.Serve(ctx, adminLn, admin.Config{
			Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
			Ready: func() error {
				if !ready.Load() {
					return errors.New("source not loaded yet")
				}
				if issuers.Issuer() == nil {
					return errors.New("no issuer loaded yet")
				}
				return nil
			},
		})
		if err != nil {
			errc <- fmt.Errorf("admin server: %w", err)
		}
	}()
	ready.Store(true)
	log.Info("controller serving", "grpc", grpcLn.Addr().String(), "admin", adminLn.Addr().String(),
		"source", src, "trust_domain", cfg.TrustDomain, "cert_lifetime", cfg.CertLifetime, "clock_skew", cfg.ClockSkew)

	select {
	case <-ctx.Done():
	case err = <-errc:
		log.Error("controller failing", "err", err)
	}
	cancel()
	stopGRPC(srv, 2*time.Second)
	wg.Wait()
	log.Info("controller stopped")
	return err
}

// identityService builds the Identity service over the configured issuer
// and token checks.
func identityService(ctx context.Context, cfg Config, td spiffeid.TrustDomain, kube kubernetes.Interface, reg prometheus.Registerer, log *slog.Logger) (*identity.Service, issuerRunner, error) {
	var issuers issuerRunner
	if cfg.IdentityDir != "" {
		s, err := identity.NewDirSource(cfg.IdentityDir, log, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("identity-dir: %w", err)
		}
		issuers = s
	} else {
		ns, name, _ := strings.Cut(cfg.IdentitySecret, "/")
		s, err := identity.NewSecretSource(ctx, kube, ns, name, log, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("identity-secret: %w", err)
		}
		issuers = s
	}
	var validators []identity.TokenValidator
	if cfg.JoinTokenKey != "" {
		key, err := identity.LoadJoinTokenVerifyKey(cfg.JoinTokenKey)
		if err != nil {
			return nil, nil, fmt.Errorf("join-token-key: %w", err)
		}
		validators = append(validators, identity.NewJoinTokens(key, identity.Audience, nil).WithMaxLifetime(cfg.JoinTokenMaxLifetime))
	}
	if kube != nil {
		validators = append(validators, identity.NewTokenReviews(kube, identity.TokenReviewConfig{
			TrustDomain: td,
			Audience:    identity.Audience,
			Issuers:     serviceAccountIssuers(cfg, log),
		}))
	}
	svc, err := identity.NewService(identity.Config{
		TrustDomain:  td,
		Issuers:      issuers,
		Tokens:       identity.AnyOf(validators...),
		Lifetime:     cfg.CertLifetime,
		ClockSkew:    cfg.ClockSkew,
		CertifyRate:  cfg.CertifyRate,
		CertifyBurst: cfg.CertifyBurst,
		Registerer:   reg,
		Log:          log,
	})
	if err != nil {
		return nil, nil, err
	}
	return svc, issuers, nil
}

// inClusterTokenFile is where a pod's own service-account token is
// mounted.
const inClusterTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// serviceAccountIssuers is the issuer service-account tokens must name:
// the configured one, else the one in the controller's own token. Without
// either, the issuer is left to the TokenReview.
func serviceAccountIssuers(cfg Config, log *slog.Logger) []string {
	if cfg.ServiceAccountIssuer != "" {
		return []string{cfg.ServiceAccountIssuer}
	}
	token, err := os.ReadFile(inClusterTokenFile)
	if err == nil {
		var iss string
		if iss, err = identity.IssuerOf(token); err == nil {
			log.Info("service-account tokens must name the issuer of the controller's own", "issuer", iss)
			return []string{iss}
		}
	}
	log.Warn("service-account token issuer unknown: it is left to the TokenReview (set -service-account-issuer)", "err", err)
	return nil
}

// issuerRunner is the issuer in effect, following changes until its
// context ends.
type issuerRunner interface {
	identity.IssuerSource
	Run(ctx context.Context) error
}

// stopGRPC lets unary calls in flight finish for up to grace, then closes
// everything: destination streams never end on their own, and the proxies
// keep their state and reconnect.
func stopGRPC(srv *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		srv.Stop()
		<-done
	}
}
