package proxy

import (
	"context"
	"errors"
	"fmt"
	"github.com/skeinmesh/skein/internal/authz"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/admin"
	"github.com/skeinmesh/skein/internal/proxy/authzclient"
	"github.com/skeinmesh/skein/internal/proxy/destclient"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/inbound"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/mirror"
	"github.com/skeinmesh/skein/internal/proxy/origdst"
	"github.com/skeinmesh/skein/internal/proxy/outbound"
	"github.com/skeinmesh/skein/internal/proxy/policyclient"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/proxy/tap"
	"github.com/skeinmesh/skein/internal/routes"
	mirrorpb "github.com/skeinmesh/skein/proto/mirror"
)

// Run serves until ctx ends or /shutdown is called, then drains: for
// cfg.DrainDelay /ready says "draining" while the listeners still accept
// (clients that have not yet heard of the pod's removal keep connecting);
// then the listeners close, HTTP/2 clients get GOAWAY, idle HTTP/1
// connections are closed, and in-flight requests, streams, tunnels and
// opaque connections get cfg.ShutdownGrace to finish before what is left is
// closed.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid proxy config: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	// serveCtx ends serving; connCtx outlives it by the grace period.
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	connCtx, stopConns := context.WithCancel(context.Background())
	defer stopConns()

	cp, err := connectControlPlane(cfg, log)
	if err != nil {
		return err
	}
	defer cp.close()
	cp.runIdentity(connCtx)
	resolver, err := startDiscovery(serveCtx, cfg, cp, log)
	if err != nil {
		return err
	}
	reg, err := metrics.New(cfg.Labels)
	if err != nil {
		return fmt.Errorf("labels: %w", err)
	}

	lns, err := openListeners(serveCtx, cfg)
	if err != nil {
		return err
	}
	defer closeAll(lns)

	out := outbound.New(connCtx, resolver, cfg.Balance, cp.meshClient(), log)
	if err := out.CountBreakerChanges(reg.Registerer()); err != nil {
		return err
	}
	in := inbound.New(cfg.Mode == ModeTProxy)
	engineCfg := newEngineConfig(cfg.TunnelIdleTimeout)
	examples := mirror.NewExamples()
	mirrors, err := mirror.New(connCtx, mirror.Config{Registerer: reg.Registerer(), Examples: examples, Log: log})
	if err != nil {
		return err
	}
	if cp.conn != nil {
		go examples.Report(connCtx, mirrorpb.NewMirrorDiffsClient(cp.conn), mirror.ReportInterval, log)
	}
	taps := tap.New(tap.Config{Identity: cfg.Identity, Labels: cfg.Labels})
	inboundPolicy, err := startAuthz(connCtx, cfg, cp, log)
	if err != nil {
		return err
	}
	stacks := stackConfig{metrics: reg, tunnelIdleTimeout: cfg.TunnelIdleTimeout, engines: engines(engineCfg, log), log: log,
		routes: startPolicies(connCtx, cfg, cp, mirrors.Known, log), mirrors: mirrors, authz: inboundPolicy, tap: taps}
	outHTTP := newHTTPServers(outboundStack(out, stacks), engineCfg, log)
	authorizer := newAuthorizer(stacks)
	if authorizer != nil {
		// Closes what a tightened policy no longer allows, until the
		// connections are gone.
		go authorizer.Run(connCtx)
	}
	inHTTP := newHTTPServers(inboundStack(connCtx, in, stacks, authorizer), engineCfg, log)
	refused, err := refusedCounter(reg.Registerer())
	if err != nil {
		return fmt.Errorf("registering tcp_refused_total: %w", err)
	}
	listeners := []*listener{
		{
			direction: "outbound", ln: lns.outbound, http1: outHTTP.http1, http2: outHTTP.http2,
			dialOpaque: func(ctx context.Context, ci *stack.ConnInfo) (net.Conn, error) {
				c, _, err := out.DialDestination(ctx, ci.OrigDst)
				return c, err
			},
			opaquePorts: cfg.OpaquePorts, detectTimeout: cfg.DetectTimeout, opaqueIdleTimeout: cfg.OpaqueIdleTimeout,
			// The outbound listener's only client is the workload itself.
			limits: newConnLimiter(cfg.MaxConnections, 0), refused: refused,
			metrics: reg, log: log,
		},
		{
			direction: "inbound", ln: lns.inbound, http1: inHTTP.http1, http2: inHTTP.http2, transparent: cfg.Mode == ModeTProxy,
			dialOpaque: in.Dial, appPorts: inbound.NewListeningPorts(),
			opaquePorts: cfg.OpaquePorts, detectTimeout: cfg.DetectTimeout, opaqueIdleTimeout: cfg.OpaqueIdleTimeout,
			limits: newConnLimiter(cfg.MaxConnections, cfg.MaxConnectionsPerSource), refused: refused,
			metrics: reg, log: log,
			mesh: cp.meshServer(), peerID: peerID, requireMTLS: cfg.RequireMTLS,
			authorizer: authorizer,
		},
	}
	var serving sync.WaitGroup
	for _, l := range listeners {
		serving.Add(1)
		go func() {
			defer serving.Done()
			l.serve(connCtx)
		}()
	}

	var draining atomic.Bool
	adminDone := make(chan error, 1)
	tapSvc := cp.tapService(cfg, taps, log)
	go func() {
		adminDone <- serveAdminPort(connCtx, lns.admin, admin.Config{
			Metrics:       reg.Handler(),
			MetricsFrom:   cfg.MetricsAllowCIDRs,
			ProbeTCPPorts: cfg.ProbeTCPPorts,
			Log:           log,
			Ready: func() error {
				if draining.Load() {
					return errors.New("draining")
				}
				if cp.identity != nil {
					return cp.identity.Ready()
				}
				return nil
			},
			Shutdown: stopServing,
			Handlers: cp.adminHandlers(),
		}, tapSvc, log)
	}()
	log.Info("proxy serving",
		"outbound", lns.outbound.Addr().String(), "inbound", lns.inbound.Addr().String(),
		"admin", lns.admin.Addr().String(), "mode", cfg.Mode, "tap_served_to", tapSvc.client)

	<-serveCtx.Done()
	draining.Store(true)
	log.Info("draining: /ready fails, still accepting", "drain_delay", cfg.DrainDelay, "grace", cfg.ShutdownGrace)
	time.Sleep(cfg.DrainDelay)
	log.Info("draining: no longer accepting")
	lns.outbound.Close()
	lns.inbound.Close()
	serving.Wait()

	graceCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	var drained sync.WaitGroup
	for _, s := range []*httpServers{outHTTP, inHTTP} {
		drained.Add(1)
		go func() {
			defer drained.Done()
			_ = s.shutdown(graceCtx)
		}()
	}
	for _, l := range listeners {
		drained.Add(1)
		go func() {
			defer drained.Done()
			waitOrCancel(graceCtx, &l.conns, stopConns)
		}()
	}
	drained.Wait()
	stopConns()
	<-adminDone
	log.Info("proxy stopped")
	return nil
}

// waitOrCancel waits for wg; when ctx ends first it calls cancel (which
// makes the waited-for work stop) and then waits.
func waitOrCancel(ctx context.Context, wg *sync.WaitGroup, cancel context.CancelFunc) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		cancel()
		<-done
	}
}

// startPolicies is the outbound policy of each destination: from the
// controller, over the connection discovery uses, or none without one.
func startPolicies(ctx context.Context, cfg Config, cp *controlPlane, received func(*routes.Policy), log *slog.Logger) routes.Lookup {
	if cp.conn == nil {
		return nil // no controller, no policy: the route layer is left out
	}
	return policyclient.New(ctx, cp.conn, policyclient.Options{ClientID: cfg.Identity, Log: log, Received: received})
}

// startAuthz is the inbound policy of the workload's own ports: from the
// controller, for the instance its -labels name (namespace=, pod=), or none
// without a controller. Labels that name no instance leave every port
// without an answer, which the authorization layer denies: logged here.
func startAuthz(ctx context.Context, cfg Config, cp *controlPlane, log *slog.Logger) (authz.Lookup, error) {
	if cp.conn == nil {
		return nil, nil
	}
	ns, pod := cfg.Labels["namespace"], cfg.Labels["pod"]
	if ns == "" || pod == "" {
		log.Error("the proxy's -labels name no namespace= and pod=: the controller cannot send this workload's inbound policy, so inbound traffic is denied")
	}
	c, err := authzclient.New(ctx, cp.conn, authzclient.Options{Namespace: ns, Pod: pod, Workload: cfg.Labels["workload"],
		Ports: cfg.InboundPorts, Log: log})
	if err != nil {
		return nil, fmt.Errorf("inbound policy: %w", err)
	}
	return c, nil
}

func startDiscovery(ctx context.Context, cfg Config, cp *controlPlane, log *slog.Logger) (discovery.Resolver, error) {
	if cp.conn != nil {
		return destclient.New(cp.conn, destclient.Options{ClientID: cfg.Identity, Log: log}), nil
	}
	if cfg.DiscoveryFile == "" {
		return noDiscovery{}, nil
	}
	f := discovery.NewFile(cfg.DiscoveryFile, log)
	loaded := make(chan error, 1)
	go func() { loaded <- f.Run(ctx) }()
	// Run returns at once when the first load fails; otherwise it keeps
	// watching until ctx ends.
	select {
	case err := <-loaded:
		if err != nil {
			return nil, err
		}
	case <-f.Loaded():
	}
	return f, nil
}

// noDiscovery knows no destination: every request goes where it was sent.
type noDiscovery struct{}

func (noDiscovery) Watch(_ context.Context, _ string, update func(discovery.EndpointSet)) error {
	update(discovery.EndpointSet{Exists: false})
	return nil
}

type openedListeners struct{ outbound, inbound, admin net.Listener }

func openListeners(ctx context.Context, cfg Config) (*openedListeners, error) {
	var lc net.ListenConfig
	out, err := lc.Listen(ctx, "tcp", cfg.OutboundAddr)
	if err != nil {
		return nil, fmt.Errorf("outbound listener: %w", err)
	}
	var in net.Listener
	if cfg.Mode == ModeTProxy {
		in, err = origdst.ListenTransparent(ctx, cfg.InboundAddr)
	} else {
		in, err = lc.Listen(ctx, "tcp", cfg.InboundAddr)
	}
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("inbound listener: %w", err)
	}
	adm, err := lc.Listen(ctx, "tcp", cfg.AdminAddr)
	if err != nil {
		out.Close()
		in.Close()
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	return &openedListeners{outbound: out, inbound: in, admin: adm}, nil
}

func closeAll(l *openedListeners) {
	l.outbound.Close()
	l.inbound.Close()
	l.admin.Close()
}
