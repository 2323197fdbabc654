package inbound

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

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
}

// NewServer returns a Server compiling with cfg. It compiles nothing until
// Start. maxStreamsPerPeer <= 0 means peerstreams.DefaultMax.
func NewServer(cfg Config, log *slog.Logger, maxStreamsPerPeer int) *Server {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "inbound-policy")
	return &Server{hub: newHub(log, NewCompiler(cfg, log)), log: log, streams: peerstreams.New(maxStreamsPerPeer)}
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
		log.Warn("inbound policy refused: a proxy may only ask for its own workload")
		return status.Errorf(codes.PermissionDenied, "%s may not read the inbound policy of namespace %s", peerID, ns)
	}
	release, ok := s.streams.Acquire(clientip.FromContext(ctx))
	if !ok {
		return status.Errorf(codes.ResourceExhausted, "too many open policy streams from this client: at most %d per peer", s.streams.Max())
	}
	defer release()
	updates, unwatch, err := s.hub.watch(ctx, topicKey{portKey{instanceKey{ns, pod}, uint16(port)}, req.GetWorkload()})
	if err != nil {
		return status.FromContextError(err).Err()
	}
	defer unwatch()
	log.Debug("inbound policy stream opened")
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case u := <-updates:
			if u.instance.Name != "" && peerID.String() != model.Identity(peerID.TrustDomain().Name(), u.instance.Namespace, u.instance.ServiceAccount) {
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
