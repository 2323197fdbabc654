// Package emoji is the demo's catalogue service: a fixed list of emoji that
// the web front end shows and that votes refer to by name. It serves the
// skein.demo.v1alpha1.Emoji gRPC API over plain h2c.
package emoji

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/demo/grpcserve"
	pb "github.com/skeinmesh/skein/proto/demo"
)

// Catalogue is every emoji the service knows, in the order List returns
// them.
var Catalogue = []*pb.EmojiItem{
	{Name: "doughnut", Unicode: "🍩"},
	{Name: "taco", Unicode: "🌮"},
	{Name: "pizza", Unicode: "🍕"},
	{Name: "sushi", Unicode: "🍣"},
	{Name: "ramen", Unicode: "🍜"},
	{Name: "croissant", Unicode: "🥐"},
	{Name: "avocado", Unicode: "🥑"},
	{Name: "cheese", Unicode: "🧀"},
	{Name: "dumpling", Unicode: "🥟"},
	{Name: "cookie", Unicode: "🍪"},
}

// Server answers the Emoji API from Catalogue. It keeps no state.
type Server struct {
	pb.UnimplementedEmojiServer
}

// List returns the whole catalogue.
func (Server) List(context.Context, *pb.ListRequest) (*pb.ListResponse, error) {
	return &pb.ListResponse{Emoji: Catalogue}, nil
}

// Find returns the emoji named in the request, or NOT_FOUND.
func (Server) Find(_ context.Context, req *pb.FindRequest) (*pb.FindResponse, error) {
	for _, e := range Catalogue {
		if e.Name == req.GetName() {
			return &pb.FindResponse{Emoji: e}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "no emoji named %q", req.GetName())
}

// Serve serves the Emoji API on lis until ctx ends.
func Serve(ctx context.Context, lis net.Listener) error {
	return grpcserve.Serve(ctx, lis, register)
}

// ListenAndServe serves the Emoji API on addr until ctx ends.
func ListenAndServe(ctx context.Context, addr string) error {
	return grpcserve.Listen(ctx, addr, register)
}

func register(s grpc.ServiceRegistrar) { pb.RegisterEmojiServer(s, Server{}) }
