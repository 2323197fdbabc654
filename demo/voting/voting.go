// Package voting is the demo's ballot box: it counts votes for emoji, in
// memory, separately in each replica, and serves the
// skein.demo.v1alpha1.Voting gRPC API over plain h2c.
//
// It is also the demo's deliberately failing path: every vote for SoldOut
// fails with UNKNOWN. The failure is deterministic, so the share of failed
// calls is exactly the share of such votes the client sends (see
// demo/votebot).
package voting

import (
	"cmp"
	"context"
	"net"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/demo/grpcserve"
	pb "github.com/skeinmesh/skein/proto/demo"
)

// SoldOut is the choice whose every vote fails.
const SoldOut = "doughnut"

// SoldOutMessage is the gRPC status message of a vote for SoldOut.
const SoldOutMessage = SoldOut + " is sold out"

// Server counts votes. The zero value is ready to use.
type Server struct {
	pb.UnimplementedVotingServer

	mu    sync.Mutex
	votes map[string]int64
}

// Vote counts one vote for the request's choice; a vote for SoldOut fails
// with UNKNOWN and is not counted.
func (s *Server) Vote(_ context.Context, req *pb.VoteRequest) (*pb.VoteResponse, error) {
	choice := req.GetChoice()
	switch choice {
	case "":
		return nil, status.Error(codes.InvalidArgument, "choice is required")
	case SoldOut:
		return nil, status.Error(codes.Unknown, SoldOutMessage)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.votes == nil {
		s.votes = map[string]int64{}
	}
	s.votes[choice]++
	return &pb.VoteResponse{}, nil
}

// Results returns this replica's counts, most votes first, ties by name.
func (s *Server) Results(context.Context, *pb.ResultsRequest) (*pb.ResultsResponse, error) {
	s.mu.Lock()
	results := make([]*pb.VoteCount, 0, len(s.votes))
	for choice, n := range s.votes {
		results = append(results, &pb.VoteCount{Choice: choice, Votes: n})
	}
	s.mu.Unlock()
	slices.SortFunc(results, func(a, b *pb.VoteCount) int {
		return cmp.Or(cmp.Compare(b.Votes, a.Votes), cmp.Compare(a.Choice, b.Choice))
	})
	return &pb.ResultsResponse{Results: results}, nil
}

// Serve serves the Voting API of s on lis until ctx ends.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	return grpcserve.Serve(ctx, lis, s.register)
}

// ListenAndServe serves the Voting API of s on addr until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	return grpcserve.Listen(ctx, addr, s.register)
}

func (s *Server) register(r grpc.ServiceRegistrar) { pb.RegisterVotingServer(r, s) }
