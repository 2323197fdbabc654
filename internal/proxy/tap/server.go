package tap

import (
	"errors"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/proxy/identity"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

// Server is the Tap gRPC service over a Tap. It serves only a client whose
// verified certificate names ClientID: the TLS handshake should already
// have refused everyone else; this is the check behind it.
type Server struct {
	tappb.UnimplementedTapServer
	tap      *Tap
	clientID string
	log      *slog.Logger
}

// NewServer serves t's events to clientID (the controller's SPIFFE ID)
// only.
func NewServer(t *Tap, clientID string, log *slog.Logger) *Server {
	return &Server{tap: t, clientID: clientID, log: log}
}

// Register adds the service to srv.
func (s *Server) Register(srv grpc.ServiceRegistrar) { tappb.RegisterTapServer(srv, s) }

// Observe streams the session's events until the caller cancels.
func (s *Server) Observe(req *tappb.ObserveRequest, stream grpc.ServerStreamingServer[tappb.Event]) error {
	ctx := stream.Context()
	client, err := s.authorize(stream)
	if err != nil {
		return err
	}
	f := req.GetFilter()
	s.log.Info("tap session opened", "client", client, "direction", f.GetDirection(), "method", f.GetMethod(),
		"path_prefix", f.GetPathPrefix(), "authority", f.GetAuthority(), "route", f.GetRoute(),
		"peer_identity", f.GetPeerIdentity(), "peer_addresses", len(f.GetPeerAddresses()),
		"max_events_per_second", req.MaxEventsPerSecond, "body_bytes", req.BodyBytes)
	err = s.tap.Observe(ctx, req, stream.Send)
	s.log.Info("tap session closed", "client", client, "err", err)
	switch {
	case errors.Is(err, errTooManySessions):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, ErrBadRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return err
}

// authorize returns the caller's verified identity when it is the one
// allowed, else PERMISSION_DENIED (logged).
func (s *Server) authorize(stream grpc.ServerStream) (string, error) {
	p, _ := peer.FromContext(stream.Context())
	addr := ""
	id := ""
	if p != nil {
		addr = p.Addr.String()
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			if got, err := identity.PeerID(info.State); err == nil {
				id = got.String()
			}
		}
	}
	if s.clientID == "" || id != s.clientID {
		s.log.Warn("tap refused: the client is not the controller", "client", addr, "client_id", id)
		return "", status.Error(codes.PermissionDenied, "tap is served to the controller only")
	}
	return id, nil
}
