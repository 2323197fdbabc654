package voting

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/skeinmesh/skein/proto/demo"
)

func TestVoteCountsAndSoldOutFails(t *testing.T) {
	ctx := context.Background()
	var s Server
	for _, choice := range []string{"taco", "pizza", "taco", SoldOut, "cookie", "taco", "pizza"} {
		_, err := s.Vote(ctx, &pb.VoteRequest{Choice: choice})
		switch {
		case choice == SoldOut && status.Code(err) != codes.Unknown:
			t.Errorf("vote for %s: err = %v, want code Unknown", choice, err)
		case choice == SoldOut && status.Convert(err).Message() != "doughnut is sold out":
			t.Errorf("vote for %s: message = %q", choice, status.Convert(err).Message())
		case choice != SoldOut && err != nil:
			t.Errorf("vote for %s: %v", choice, err)
		}
	}
	if _, err := s.Vote(ctx, &pb.VoteRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty vote: err = %v, want InvalidArgument", err)
	}

	resp, err := s.Results(ctx, &pb.ResultsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		choice string
		votes  int64
	}{{"taco", 3}, {"pizza", 2}, {"cookie", 1}}
	got := resp.GetResults()
	if len(got) != len(want) {
		t.Fatalf("results = %v, want %v", got, want)
	}
	for i, w := range want {
		if got[i].GetChoice() != w.choice || got[i].GetVotes() != w.votes {
			t.Errorf("results[%d] = %v, want %v", i, got[i], w)
		}
	}
}
