package mirrordiff

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/controller/identity"
	mirrorpb "github.com/skeinmesh/skein/proto/mirror"
)

// Server is the MirrorDiffs gRPC service over a Store. The controller's
// gRPC server lets only mesh peers (proxies with a mesh certificate) call
// it.
type Server struct {
	mirrorpb.UnimplementedMirrorDiffsServer
	store *Store
}

// NewServer serves reports into store.
func NewServer(store *Store) *Server { return &Server{store: store} }

// Register adds the service to g.
func (s *Server) Register(g grpc.ServiceRegistrar) { mirrorpb.RegisterMirrorDiffsServer(g, s) }

// Report keeps the examples of one proxy's report. A report over
// MaxPerReport, or an example with a route name no route has, is refused
// whole.
func (s *Server) Report(ctx context.Context, req *mirrorpb.ReportRequest) (*mirrorpb.ReportResponse, error) {
	peer, err := identity.MeshPeer(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, identity.ErrNoMeshPeer.Error())
	}
	if n := len(req.GetExamples()); n > MaxPerReport {
		return nil, status.Errorf(codes.InvalidArgument, "%d examples in one report, at most %d", n, MaxPerReport)
	}
	exs := make([]Example, 0, len(req.GetExamples()))
	for i, pb := range req.GetExamples() {
		ex, err := fromProto(pb, peer.String())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "example %d: %v", i, err)
		}
		exs = append(exs, ex)
	}
	for _, ex := range exs {
		s.store.Add(ex)
	}
	return &mirrorpb.ReportResponse{}, nil
}

// fromProto checks an example's route name and clips everything else to
// its bound.
func fromProto(pb *mirrorpb.Example, proxy string) (Example, error) {
	route := pb.GetRoute()
	ns, name, ok := strings.Cut(route, "/")
	if !ok || ns == "" || name == "" || len(route) > MaxRouteName || !utf8.ValidString(route) {
		return Example{}, fmt.Errorf("route %q is not a route name (namespace/name, at most %d bytes)", clip(route), MaxRouteName)
	}
	ex := Example{
		Time:          pb.GetTime().AsTime(),
		Route:         route,
		Backend:       clip(pb.GetBackend()),
		Proxy:         clip(proxy),
		Method:        clip(pb.GetMethod()),
		Path:          clip(pb.GetPath()),
		PrimaryStatus: int(pb.GetPrimaryStatus()),
		MirrorStatus:  int(pb.GetMirrorStatus()),
		BodyDiffers:   pb.GetBodyDiffers(),
		PrimaryBody:   clip(string(pb.GetPrimaryBody())),
		MirrorBody:    clip(string(pb.GetMirrorBody())),
	}
	for i, h := range pb.GetHeaders() {
		if i == maxHeaders {
			break
		}
		ex.Headers = append(ex.Headers, HeaderDiff{Name: clip(h.GetName()), Primary: clip(h.GetPrimary()), Mirror: clip(h.GetMirror())})
	}
	return ex, nil
}

func clip(s string) string {
	if len(s) > maxField {
		return s[:maxField]
	}
	return s
}
