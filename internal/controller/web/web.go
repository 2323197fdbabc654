// Package web is the controller's dashboard: one page and the plain
// JavaScript modules and stylesheet it loads, embedded in the binary and
// served beside the metrics API. There is no front-end build
// step: the files under assets/ are what the browser runs. The page reads
// only the metrics API (/api/v1/stat, edges, routes, timeseries, tap), so
// its numbers are the CLI's.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

//go:embed assets
var assets embed.FS

// securityHeaders keep the page to its own origin: no scripts, styles or
// connections from anywhere else, no framing.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options": "nosniff",
	"X-Frame-Options":        "DENY",
	"Referrer-Policy":        "no-referrer",
	"Cache-Control":          "no-cache",
}

// Handler serves the dashboard: the page at /, its files under /assets/.
// Every other path is 404 (the page routes with the URL's fragment).
func Handler() http.Handler {
	files, _ := fs.Sub(assets, "assets") // the directory is embedded above
	static := http.FileServerFS(files)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		setHeaders(w)
		http.ServeFileFS(w, r, files, "index.html")
	})
	mux.HandleFunc("GET /assets/{file}", func(w http.ResponseWriter, r *http.Request) {
		if path.Ext(r.PathValue("file")) == ".html" {
			http.NotFound(w, r)
			return
		}
		setHeaders(w)
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + r.PathValue("file")
		static.ServeHTTP(w, r2)
	})
	return mux
}

func setHeaders(w http.ResponseWriter) {
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
}
