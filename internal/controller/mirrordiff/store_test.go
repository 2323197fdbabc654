package mirrordiff

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mirrorpb "github.com/skeinmesh/skein/proto/mirror"
)

func TestStoreKeepsTheNewestExamplesPerRoute(t *testing.T) {
	s := NewStore()
	for i := range PerRoute + 5 {
		s.Add(Example{Route: "demo/web", Path: fmt.Sprintf("/%d", i)})
	}
	got := s.Recent("demo/web")
	if len(got) != PerRoute {
		t.Fatalf("kept %d examples, want %d", len(got), PerRoute)
	}
	if got[0].Path != fmt.Sprintf("/%d", PerRoute+4) || got[PerRoute-1].Path != "/5" {
		t.Errorf("kept %s .. %s, want the newest first: /%d .. /5", got[0].Path, got[PerRoute-1].Path, PerRoute+4)
	}
}

func TestStoreDropsTheRouteReportedToLongestAgo(t *testing.T) {
	s := NewStore()
	for i := range MaxRoutes {
		s.Add(Example{Route: fmt.Sprintf("demo/r%d", i)})
	}
	s.Add(Example{Route: "demo/r0"}) // r0 is fresh again: r1 is now the oldest
	s.Add(Example{Route: "demo/new"})
	if n := len(s.Routes()); n != MaxRoutes {
		t.Errorf("%d routes kept, want %d", n, MaxRoutes)
	}
	if s.Recent("demo/r1") != nil || s.Recent("demo/r0") == nil || s.Recent("demo/new") == nil {
		t.Error("want r1 (reported to longest ago) dropped, r0 and the new route kept")
	}
}

func TestReportBoundsWhatItKeeps(t *testing.T) {
	long := strings.Repeat("x", 10_000)
	ex, err := fromProto(&mirrorpb.Example{Route: "demo/web", Path: long, PrimaryBody: []byte(long),
		Headers: make([]*mirrorpb.HeaderDiff, 100)}, "spiffe://cluster.local/ns/demo/sa/web")
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Path) != maxField || len(ex.PrimaryBody) != maxField || len(ex.Headers) != maxHeaders {
		t.Errorf("kept a path of %d bytes, a body of %d and %d headers; want %d, %d and %d",
			len(ex.Path), len(ex.PrimaryBody), len(ex.Headers), maxField, maxField, maxHeaders)
	}
	for _, route := range []string{"", "web", "/web", "demo/", "demo/" + long} {
		if _, err := fromProto(&mirrorpb.Example{Route: route}, ""); err == nil {
			t.Errorf("route %.40q accepted", route)
		}
	}
}

func TestReportNeedsAMeshPeer(t *testing.T) {
	_, err := NewServer(NewStore()).Report(context.Background(), &mirrorpb.ReportRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("Report without a mesh certificate: %v, want Unauthenticated", err)
	}
}
