package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestServesThePageAndItsAssetsWithASameOriginPolicy(t *testing.T) {
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	for _, tt := range []struct{ path, contentType, contains string }{
		{"/", "text/html", `<script type="module" src="/assets/app.js">`},
		{"/assets/app.js", "javascript", "import"},
		{"/assets/app.css", "text/css", ":root"},
	} {
		resp, err := http.Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), tt.contentType) ||
			!strings.Contains(string(body), tt.contains) {
			t.Errorf("GET %s: %d %q, want 200 %s containing %q", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), tt.contentType, tt.contains)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", tt.path, csp)
		}
	}
	for _, path := range []string{"/nothing", "/assets/", "/assets/index.html", "/assets/../web.go"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("GET %s: 200, want an error", path)
		}
	}
}

// The page loads nothing from elsewhere: no CDN, no web fonts.
func TestAssetsReferenceNoOtherOrigin(t *testing.T) {
	url := regexp.MustCompile(`(https?:)?//[a-zA-Z0-9.-]+\.[a-z]{2,}`)
	fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(assets, path)
		for _, m := range url.FindAllString(string(b), -1) {
			if m != "http://www.w3.org" { // the SVG namespace, a name, not a fetch
				t.Errorf("%s references %s", path, m)
			}
		}
		return nil
	})
}
