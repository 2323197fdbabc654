// Package destination serves the Destination gRPC API: for one authority or
// ip:port, a stream that starts with the full endpoint set and then follows
// every change as deltas, read from the mesh's model. It neither knows nor
// cares where the model's data comes from (Kubernetes, files).
package destination

import (
	"context"
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
	"github.com/skeinmesh/skein/internal/model"
	destinationpb "github.com/skeinmesh/skein/proto/destination"
)

// Server implements destinationpb.DestinationServer over a model.Watcher.
// Streams last until the client cancels, so a graceful stop of the gRPC
// server waits for every proxy to go away: stop it with a deadline and fall
// back to grpc.Server.Stop.
type Server struct {
	destinationpb.UnimplementedDestinationServer

	watcher model.Watcher
	log     *slog.Logger
	metrics *serverMetrics
	deltas  deltaCache
	streams *peerstreams.Limit
}

// DefaultMaxStreamsPerPeer is peerstreams.DefaultMax.
const DefaultMaxStreamsPerPeer = peerstreams.DefaultMax

// Limits bound what one client can hold open.
type Limits struct {
	// MaxStreamsPerPeer is how many streams one client IP address may have
	// open at once; past it Get answers RESOURCE_EXHAUSTED. Zero means
	// DefaultMaxStreamsPerPeer.
	MaxStreamsPerPeer int
}

// NewServer returns a Server reading from watcher. A nil log means
// slog.Default(); a nil reg means the server's metrics are not exported.
func NewServer(watcher model.Watcher, log *slog.Logger, reg prometheus.Registerer, limits Limits) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	m, err := newServerMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("destination server metrics: %w", err)
	}
	return &Server{
		watcher: watcher, log: log.With("component", "destination"), metrics: m,
		streams: peerstreams.New(limits.MaxStreamsPerPeer),
	}, nil
}

// Register adds the Destination service to g.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	destinationpb.RegisterDestinationServer(g, s)
}

// Get implements destinationpb.DestinationServer: it watches req.Path in the
// model and sends what changed until the client cancels.
func (s *Server) Get(req *destinationpb.GetDestination, stream grpc.ServerStreamingServer[destinationpb.Update]) error {
	if err := validatePath(req.GetPath()); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel() // ends the model watch when the stream ends for any reason

	log := s.log.With("path", req.GetPath(), "client_id", req.GetClientId())
	if p, ok := peer.FromContext(ctx); ok {
		log = log.With("peer", p.Addr.String())
	}
	release, ok := s.streams.Acquire(clientip.FromContext(ctx))
	if !ok {
		s.metrics.streamsRefused.Inc()
		log.Debug("destination stream refused: too many open from this peer", "max", s.streams.Max())
		return status.Errorf(codes.ResourceExhausted,
			"too many open destination streams from this client: at most %d per peer", s.streams.Max())
	}
	defer release()

	latest := make(chan model.EndpointSet, 1)
	if err := s.watcher.Watch(ctx, req.GetPath(), func(set model.EndpointSet) { offerLatest(latest, set) }); err != nil {
		log.Warn("destination watch failed", "err", err)
		return status.Errorf(codes.Unavailable, "watching %s: %v", req.GetPath(), err)
	}

	log.Debug("destination stream opened")
	s.metrics.activeStreams.Inc()
	defer s.metrics.activeStreams.Dec()

	err := s.send(ctx, req.GetPath(), stream, latest)
	log.Debug("destination stream closed", "err", err)
	return err
}

// send is the stream's only sender: it takes the latest set the model
// offered, turns it into updates against what this stream sent before and
// sends them. While a send blocks (a slow client), newer sets replace the
// waiting one, so the client gets the newest state, not every step.
func (s *Server) send(ctx context.Context, path string, stream grpc.ServerStreamingServer[destinationpb.Update], latest <-chan model.EndpointSet) error {
	var sent sentState
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case set := <-latest:
			change := s.deltas.change(path, &sent, set)
			encoded := change.prepared(stream)
			for i, u := range change.updates {
				var err error
				if encoded != nil {
					err = stream.SendMsg(encoded[i])
				} else {
					err = stream.Send(u)
				}
				if err != nil {
					return fmt.Errorf("sending destination update: %w", err)
				}
				s.metrics.updatesSent.WithLabelValues(updateKind(u)).Inc()
			}
		}
	}
}

// offerLatest puts set into ch (capacity 1), replacing a value the reader
// has not taken yet. It never blocks, provided it has one caller at a time
// (the model promises that per watch) and ch is only read elsewhere.
func offerLatest(ch chan model.EndpointSet, set model.EndpointSet) {
	select {
	case <-ch:
	default:
	}
	ch <- set
}

// validatePath accepts "host:port" with a non-empty host (a name or an IP)
// and a port in 1..65535.
func validatePath(path string) error {
	host, port, err := net.SplitHostPort(path)
	if err != nil {
		return fmt.Errorf("path %q: want host:port (an authority like web.demo.svc.cluster.local:8080 or an ip:port): %v", path, err)
	}
	if host == "" {
		return fmt.Errorf("path %q: host is empty", path)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("path %q: port %q is not a number in 1..65535", path, port)
	}
	return nil
}

func updateKind(u *destinationpb.Update) string {
	switch u.GetKind().(type) {
	case *destinationpb.Update_Snapshot:
		return "snapshot"
	case *destinationpb.Update_Add:
		return "add"
	case *destinationpb.Update_Remove:
		return "remove"
	case *destinationpb.Update_DoesNotExist:
		return "does_not_exist"
	}
	return "unknown"
}
