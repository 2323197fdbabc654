// Package charts carries Skein's Helm chart (skein/) into the binaries:
// `skein install` renders it through Helm's library, and the files the
// chart ships (Skein's CRDs in skein/crds, the Gateway API's in
// skein/files/gateway-api, the Grafana dashboards in skein/files/grafana)
// are the only copy of each, read from here by packages config and
// config/grafana.
package charts

import (
	"embed"
	"io/fs"
)

// The chart's directory name, and the root of FS.
const SkeinDir = "skein"

//go:embed all:skein
var files embed.FS

// Skein returns the chart's files, rooted at the chart's directory
// (Chart.yaml, values.yaml, templates/, crds/, files/).
func Skein() fs.FS {
	sub, err := fs.Sub(files, SkeinDir)
	if err != nil {
		panic(err) // SkeinDir is embedded above
	}
	return sub
}
