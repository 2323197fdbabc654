// Package config gives the mesh's Kubernetes configuration to the
// binaries and tests, read from the Helm chart (package charts), its only
// copy: the CustomResourceDefinitions controller-gen writes into
// charts/skein/crds from api/v1alpha1, and the Gateway API's HTTPRoute and
// GRPCRoute CRDs (standard channel) in charts/skein/files/gateway-api,
// copied as they are from the sigs.k8s.io/gateway-api module that go.mod
// requires (`make gateway-api-crds`; a test fails when the copy differs),
// which `skein install --gateway-api-crds` renders and tests apply.
package config

import (
	"io/fs"
	"sort"

	"github.com/skeinmesh/skein/charts"
)

// crdFiles is the chart.
var crdFiles = charts.Skein()

// CRDs returns the mesh's own CRD files, sorted by name, one YAML stream
// each.
func CRDs() ([][]byte, error) { return readAll("crds/*.yaml") }

// GatewayAPICRDs returns the Gateway API CRDs Skein reads (HTTPRoute,
// GRPCRoute), sorted by name, one YAML stream each.
func GatewayAPICRDs() ([][]byte, error) { return readAll(GatewayAPIDir + "/*.yaml") }

// GatewayAPIDir is where the Gateway API CRDs are, here and (under
// config/crd/standard) in the gateway-api module: in the chart.
const GatewayAPIDir = "files/gateway-api"

func readAll(pattern string) ([][]byte, error) {
	names, err := fs.Glob(crdFiles, pattern)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	files := make([][]byte, 0, len(names))
	for _, name := range names {
		data, err := fs.ReadFile(crdFiles, name)
		if err != nil {
			return nil, err
		}
		files = append(files, data)
	}
	return files, nil
}
