package inbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/controller/clientip"
	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/peerstreams"
	"github.com/skeinmesh/skein/internal/model"
	policypb "github.com/skeinmesh/skein/proto/policy"
)

// Server answers WatchInbound (registered through policy.Server, which owns
// the Policy gRPC service). Streams last until the client cancels or its
// certificate no longer matches the instance.
type Server struct {
	hub     *hub
	log     *slog.Logger
	streams *peerstreams.Limit
	metrics *serverMetrics
}

// NewServer returns a Server compiling with cfg. It compiles nothing until
// Start. A nil log means slog.Default(); a nil reg leaves the metrics
// unexported; maxStreamsPerPeer <= 0 means peerstreams.DefaultMax.
func NewServer(cfg Config, log *slog.Logger, reg prometheus.Registerer, maxStreamsPerPeer int) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "inbound-policy")
	m, err := newServerMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("inbound policy metrics: %w", err)
	}
	h := newHub(log, NewCompiler(cfg, log))
	h.invalid = m.invalidObjects
	return &Server{hub: h, log: log, streams: peerstreams.New(maxStreamsPerPeer), metrics: m}, nil
}

type serverMetrics struct {
	activeStreams  prometheus.Gauge
	streamsRefused *prometheus.CounterVec
	invalidObjects prometheus.Gauge
}

func newServerMetrics(reg prometheus.Registerer) (*serverMetrics, error) {
	m := &serverMetrics{
		activeStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skein_inbound_policy_active_streams",
			Help: "Inbound policy streams open now, one per proxy and port.",
		}),
		streamsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_inbound_policy_streams_refused_total",
			Help: "Inbound policy streams refused: reason=not_own_workload (the certificate is not the instance's) or too_many (the per-peer cap).",
		}, []string{"reason"}),
		invalidObjects: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skein_inbound_policy_invalid_objects",
			Help: "Authorization policy objects invalid now (their last good version, if any, stays in force).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.activeStreams, m.streamsRefused, m.invalidObjects} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}

// Start compiles the inputs of in now and on every change until ctx is
// done.
func (s *Server) Start(ctx context.Context, in Inputs) { in.WatchInboundInputs(ctx, s.hub.update) }

// Compiled is the current compilation, for the CLI's API (nil before the
// first).
func (s *Server) Compiled() *Compiled { return s.hub.current() }

// WatchInbound implements the Policy service's WatchInbound.
func (s *Server) WatchInbound(req *policypb.InboundRequest, stream grpc.ServerStreamingServer[policypb.InboundPolicy]) error {
	ns, pod, port := req.GetNamespace(), req.GetPod(), req.GetPort()
	if ns == "" || pod == "" || port == 0 || port > 65535 {
		return status.Error(codes.InvalidArgument, "want a namespace, a pod and a port in 1..65535")
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	peerID, err := identity.MeshPeer(ctx)
	if err != nil {
		return status.Error(codes.Unauthenticated, identity.ErrNoMeshPeer.Error())
	}
	log := s.log.With("namespace", ns, "pod", pod, "port", port, "client_id", peerID.String())
	if !inNamespace(peerID, ns) {
		s.metrics.streamsRefused.WithLabelValues("not_own_workload").Inc()
		log.Warn("inbound policy refused: a proxy may only ask for its own workload")
		return status.Errorf(codes.PermissionDenied, "%s may not read the inbound policy of namespace %s", peerID, ns)
	}
	release, ok := s.streams.Acquire(clientip.FromContext(ctx))
	if !ok {
		s.metrics.streamsRefused.WithLabelValues("too_many").Inc()
		return status.Errorf(codes.ResourceExhausted, "too many open policy streams from this client: at most %d per peer", s.streams.Max())
	}
	defer release()
	updates, unwatch, err := s.hub.watch(ctx, topicKey{portKey{instanceKey{ns, pod}, uint16(port)}, req.GetWorkload()})
	if err != nil {
		return status.FromContextError(err).Err()
	}
	defer unwatch()
	s.metrics.activeStreams.Inc()
	defer s.metrics.activeStreams.Dec()
	log.Debug("inbound policy stream opened")
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case u := <-updates:
			if u.instance.Name != "" && peerID.String() != model.Identity(peerID.TrustDomain().Name(), u.instance.Namespace, u.instance.ServiceAccount) {
				s.metrics.streamsRefused.WithLabelValues("not_own_workload").Inc()
				log.Warn("inbound policy refused: the client is not the instance's service account", "want_sa", u.instance.ServiceAccount)
				return status.Errorf(codes.PermissionDenied, "%s is not the identity of %s/%s", peerID, ns, pod)
			}
			if err := stream.Send(u.policy); err != nil {
				return fmt.Errorf("sending inbound policy: %w", err)
			}
		}
	}
}

// inNamespace reports whether id is a workload identity of namespace
// (spiffe://td/ns/<namespace>/sa/<sa>).
func inNamespace(id spiffeid.ID, namespace string) bool {
	rest, ok := strings.CutPrefix(id.Path(), "/ns/"+namespace+"/sa/")
	return ok && rest != "" && !strings.Contains(rest, "/")
}
