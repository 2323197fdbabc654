package emoji

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/skeinmesh/skein/proto/demo"
)

func TestFind(t *testing.T) {
	for _, tc := range []struct {
		name    string
		code    codes.Code
		unicode string
	}{
		{"doughnut", codes.OK, "🍩"},
		{"taco", codes.OK, "🌮"},
		{"brussels-sprout", codes.NotFound, ""},
		{"", codes.NotFound, ""},
	} {
		resp, err := Server{}.Find(context.Background(), &pb.FindRequest{Name: tc.name})
		if status.Code(err) != tc.code || resp.GetEmoji().GetUnicode() != tc.unicode {
			t.Errorf("Find(%q) = %v, %v; want %q, code %v", tc.name, resp, err, tc.unicode, tc.code)
		}
	}
}

func TestCatalogueNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range Catalogue {
		if e.Name == "" || e.Unicode == "" || seen[e.Name] {
			t.Errorf("bad or duplicate entry %v", e)
		}
		seen[e.Name] = true
	}
}
