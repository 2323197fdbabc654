package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/controller/clientip"
	"github.com/skeinmesh/skein/internal/controller/peerstreams"
	policypb "github.com/skeinmesh/skein/proto/policy"
)

// Server implements policypb.PolicyServer. Streams last until the client
// cancels: stop the gRPC server with a deadline, as for destination.
type Server struct {
	policypb.UnimplementedPolicyServer

	hub     *hub
	inbound InboundService
	log     *slog.Logger
	metrics *serverMetrics
	streams *peerstreams.Limit
}

// NewServer returns a Server. It compiles nothing until Start. A nil
// log means slog.Default(); a nil reg leaves the metrics unexported;
// maxStreamsPerPeer <= 0 means peerstreams.DefaultMax.
func NewServer(log *slog.Logger, reg prometheus.Registerer, maxStreamsPerPeer int) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "policy")
	m, err := newServerMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("policy server metrics: %w", err)
	}
	return &Server{hub: newHub(log, m), log: log, metrics: m, streams: peerstreams.New(maxStreamsPerPeer)}, nil
}

// Start compiles the policy inputs of in now and on every change, until ctx
// is done, on the goroutine of in's watch. Streams wait for the first
// compilation.
func (s *Server) Start(ctx context.Context, in Inputs) { in.WatchPolicyInputs(ctx, s.hub.update) }

// Register adds the Policy service to g.
func (s *Server) Register(g grpc.ServiceRegistrar) { policypb.RegisterPolicyServer(g, s) }

// InboundService answers WatchInbound: internal/controller/inbound, which
// shares this gRPC service.
type InboundService interface {
	WatchInbound(*policypb.InboundRequest, grpc.ServerStreamingServer[policypb.InboundPolicy]) error
}

// SetInbound makes in answer WatchInbound; call it before Register. Without
// it WatchInbound answers UNIMPLEMENTED.
func (s *Server) SetInbound(in InboundService) { s.inbound = in }

// WatchInbound implements policypb.PolicyServer by handing the stream to
// the inbound service.
func (s *Server) WatchInbound(req *policypb.InboundRequest, stream grpc.ServerStreamingServer[policypb.InboundPolicy]) error {
	if s.inbound == nil {
		return status.Error(codes.Unimplemented, "this controller serves no inbound policy")
	}
	return s.inbound.WatchInbound(req, stream)
}

// WatchOutbound implements policypb.PolicyServer.
func (s *Server) WatchOutbound(req *policypb.OutboundRequest, stream grpc.ServerStreamingServer[policypb.OutboundPolicy]) error {
	target := req.GetTarget()
	if err := validateTarget(target); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	log := s.log.With("target", target, "client_id", req.GetClientId())
	if p, ok := peer.FromContext(ctx); ok {
		log = log.With("peer", p.Addr.String())
	}
	release, ok := s.streams.Acquire(clientip.FromContext(ctx))
	if !ok {
		s.metrics.streamsRefused.Inc()
		log.Debug("policy stream refused: too many open from this peer", "max", s.streams.Max())
		return status.Errorf(codes.ResourceExhausted,
			"too many open policy streams from this client: at most %d per peer", s.streams.Max())
	}
	defer release()

	updates, unwatch, err := s.hub.watch(ctx, target)
	if err != nil {
		return status.FromContextError(err).Err()
	}
	defer unwatch()
	s.metrics.activeStreams.Inc()
	defer s.metrics.activeStreams.Dec()
	log.Debug("policy stream opened")
	for {
		select {
		case <-ctx.Done():
			log.Debug("policy stream closed")
			return status.FromContextError(ctx.Err()).Err()
		case p := <-updates:
			if err := stream.Send(p); err != nil {
				return fmt.Errorf("sending policy: %w", err)
			}
			s.metrics.updatesSent.Inc()
		}
	}
}

// validateTarget accepts "host:port" with a non-empty host and a port in
// 1..65535.
func validateTarget(target string) error {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return fmt.Errorf("target %q: want host:port (an authority like web.demo.svc.cluster.local:8080 or an ip:port): %v", target, err)
	}
	if host == "" {
		return fmt.Errorf("target %q: host is empty", target)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("target %q: port %q is not a number in 1..65535", target, port)
	}
	return nil
}

type serverMetrics struct {
	activeStreams  prometheus.Gauge
	streamsRefused prometheus.Counter
	updatesSent    prometheus.Counter
	invalidObjects prometheus.Gauge
}

func newServerMetrics(reg prometheus.Registerer) (*serverMetrics, error) {
	m := &serverMetrics{
		activeStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skein_policy_active_streams",
			Help: "Outbound policy streams open now, one per proxy and destination.",
		}),
		streamsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_policy_streams_refused_total",
			Help: "Policy streams refused because their client already held the most it may (RESOURCE_EXHAUSTED).",
		}),
		updatesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_policy_updates_sent_total",
			Help: "Outbound policies sent to proxies (each a full snapshot of one destination).",
		}),
		invalidObjects: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skein_policy_invalid_objects",
			Help: "HTTPRoutes, GRPCRoutes and Services whose policy is invalid now (their last good version, if any, serves).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.activeStreams, m.streamsRefused, m.updatesSent, m.invalidObjects} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}
