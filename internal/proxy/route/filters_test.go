package route

import (
	"net/netip"
	"testing"

	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/routes"
)

// The Gateway API's table of ReplacePrefixMatch (HTTPPathModifier).
func TestReplacePrefixMatchAsTheGatewayAPISays(t *testing.T) {
	for _, tt := range []struct{ prefix, replacement, path, want string }{
		{"/foo", "/xyz", "/foo/bar", "/xyz/bar"},
		{"/foo", "/xyz/", "/foo/bar", "/xyz/bar"},
		{"/foo/", "/xyz", "/foo/bar", "/xyz/bar"},
		{"/foo/", "/xyz/", "/foo/bar", "/xyz/bar"},
		{"/foo", "/xyz", "/foo", "/xyz"},
		{"/foo", "/xyz", "/foo/", "/xyz/"},
		{"/foo", "", "/foo/bar", "/bar"},
		{"/foo/", "", "/foo/bar", "/bar"},
		{"/foo", "/", "/foo/bar", "/bar"},
		{"/foo", "/", "/foo", "/"},
		{"/foo/", "/", "/foo/", "/"},
		{"/", "/api", "/x", "/api/x"},
	} {
		if got := replacePrefix(tt.path, tt.prefix, tt.replacement); got != tt.want {
			t.Errorf("prefix %q → %q on %q = %q, want %q", tt.prefix, tt.replacement, tt.path, got, tt.want)
		}
	}
}

func TestRewritePathKeepsTheQuery(t *testing.T) {
	m := &routes.Match{Path: &routes.PathMatch{Type: routes.PathPrefix, Value: "/old"}}
	if got := rewritePath("/old/a?x=1", &routes.PathRewrite{Prefix: "/new", IsPrefix: true}, m); got != "/new/a?x=1" {
		t.Errorf("prefix rewrite: %q", got)
	}
	if got := rewritePath("/old/a?x=1", &routes.PathRewrite{Full: "/v2"}, m); got != "/v2?x=1" {
		t.Errorf("full rewrite: %q", got)
	}
	if got := rewritePath("/old/a", &routes.PathRewrite{}, m); got != "/old/a" {
		t.Errorf("no rewrite: %q", got)
	}
}

func TestRedirectLocation(t *testing.T) {
	ci := &stack.ConnInfo{OrigDst: netip.MustParseAddrPort("10.0.0.1:8080")}
	m := &routes.Match{Path: &routes.PathMatch{Type: routes.PathPrefix, Value: "/old"}}
	for _, tt := range []struct {
		name       string
		authority  string
		rd         routes.Redirect
		destPort   uint16
		wantStatus int
		want       string
	}{
		{"only a host", "web.demo:8080", routes.Redirect{Hostname: "new.demo"}, 8080, 302, "http://new.demo:8080/old/a?q=1"},
		{"https drops 443", "web.demo:8080", routes.Redirect{Scheme: "https"}, 8080, 302, "https://web.demo/old/a?q=1"},
		{"http port 80 dropped", "web.demo", routes.Redirect{Port: 80}, 8080, 302, "http://web.demo/old/a?q=1"},
		{"explicit port and 301", "web.demo:8080", routes.Redirect{Scheme: "https", Port: 8443, StatusCode: 301}, 8080, 301, "https://web.demo:8443/old/a?q=1"},
		{"prefix path", "web.demo:8080", routes.Redirect{Path: &routes.PathRewrite{Prefix: "/new", IsPrefix: true}}, 8080, 302, "http://web.demo:8080/new/a?q=1"},
		{"full path", "web.demo:8080", routes.Redirect{Path: &routes.PathRewrite{Full: "/moved"}}, 0, 302, "http://web.demo:8080/moved?q=1"},
		{"port of the connection", "web.demo", routes.Redirect{Hostname: "x"}, 0, 302, "http://x:8080/old/a?q=1"},
	} {
		req := &stack.Request{Scheme: "http", Authority: tt.authority, Path: "/old/a?q=1", Conn: ci}
		resp := redirect(req, &tt.rd, m, tt.destPort)
		if resp.Status != tt.wantStatus || resp.Header.Get("location") != tt.want {
			t.Errorf("%s: %d %q, want %d %q", tt.name, resp.Status, resp.Header.Get("location"), tt.wantStatus, tt.want)
		}
	}
}

func TestHeaderModifierIsCaseInsensitive(t *testing.T) {
	h := stack.Header{{Name: "x-a", Value: "1"}, {Name: "x-b", Value: "2"}, {Name: "x-a", Value: "3"}, {Name: "x-gone", Value: "4"}}
	modifyHeader(&h, &routes.HeaderModifier{
		Set:    []routes.Header{{Name: "X-A", Value: "set"}, {Name: "X-New", Value: "n"}},
		Add:    []routes.Header{{Name: "X-B", Value: "added"}},
		Remove: []string{"X-Gone"},
	})
	want := stack.Header{{Name: "x-a", Value: "set"}, {Name: "x-b", Value: "2"}, {Name: "x-new", Value: "n"}, {Name: "x-b", Value: "added"}}
	if len(h) != len(want) {
		t.Fatalf("got %v, want %v", h, want)
	}
	for i := range want {
		if h[i] != want[i] {
			t.Fatalf("got %v, want %v", h, want)
		}
	}
}
