package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/proxy/mirror"
	demopb "github.com/skeinmesh/skein/proto/demo"
)

// emojiServer finds every name, except that with missing set it answers
// NOT_FOUND for the names it says.
type emojiServer struct {
	demopb.UnimplementedEmojiServer
	missing func(name string) bool
}

func (s *emojiServer) Find(_ context.Context, req *demopb.FindRequest) (*demopb.FindResponse, error) {
	if s.missing != nil && s.missing(req.GetName()) {
		return nil, status.Error(codes.NotFound, "no such emoji")
	}
	return &demopb.FindResponse{Emoji: &demopb.EmojiItem{Name: req.GetName(), Unicode: "🍩"}}, nil
}

func serveEmoji(t *testing.T, s *emojiServer) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	demopb.RegisterEmojiServer(srv, s)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return netip.MustParseAddrPort(ln.Addr().String())
}

// The primary's gRPC status comes in its trailers, a failing mirror's in a
// trailers-only answer: the mirror layer compares grpc-status from either.
func TestMirrorComparesGRPCStatusFromTrailers(t *testing.T) {
	const n = 20
	primary := serveEmoji(t, &emojiServer{})
	shadow := serveEmoji(t, &emojiServer{missing: func(name string) bool { return strings.HasSuffix(name, "9") }})
	p := newMirrorProxy(t, primary, shadow, mirrorRule(100), mirror.Config{})
	cc, err := grpc.NewClient(p.addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(mirrorPrimaryName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := demopb.NewEmojiClient(cc)
	for i := range n {
		resp, err := client.Find(context.Background(), &demopb.FindRequest{Name: fmt.Sprintf("e%d", i)})
		if err != nil || resp.GetEmoji().GetName() != fmt.Sprintf("e%d", i) {
			t.Fatalf("call %d: %v, %v; want the primary's answer", i, resp, err)
		}
	}
	p.mirrors.Wait()
	if r := p.results(t); r[mirror.ResultMismatch] != 2 || r[mirror.ResultMatch] != n-2 {
		t.Errorf("mirror_total = %v, want 2 mismatches (e9, e19) and %d matches", r, n-2)
	}
	exs := p.ex.Recent(mirrorRoute)
	if len(exs) == 0 {
		t.Fatal("no example kept")
	}
	want := []mirror.HeaderDiff{{Name: "grpc-status", Primary: "0", Mirror: "5"}}
	if !slices.Equal(exs[0].Headers, want) || exs[0].Path != "/skein.demo.v1alpha1.Emoji/Find" {
		t.Errorf("example %s headers %+v, want %+v", exs[0].Path, exs[0].Headers, want)
	}
}
