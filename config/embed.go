// Package config carries the mesh's Kubernetes configuration into the
// binaries: the CustomResourceDefinitions controller-gen writes into crd/
// from api/v1alpha1, which `skein install` renders, and the Gateway API's
// HTTPRoute and GRPCRoute CRDs (standard channel) in gateway-api/, copied
// as they are from the sigs.k8s.io/gateway-api module that go.mod requires
// (`make gateway-api-crds`; a test fails when the copy differs), which
// `skein install --gateway-api-crds` renders and tests apply.
package config

import (
	"embed"
	"io/fs"
	"sort"
)

//go:embed crd/*.yaml gateway-api/*.yaml
var crdFiles embed.FS

// CRDs returns the mesh's own CRD files, sorted by name, one YAML stream
// each.
func CRDs() ([][]byte, error) { return readAll("crd/*.yaml") }

// GatewayAPICRDs returns the Gateway API CRDs Skein reads (HTTPRoute,
// GRPCRoute), sorted by name, one YAML stream each.
func GatewayAPICRDs() ([][]byte, error) { return readAll(GatewayAPIDir + "/*.yaml") }

// GatewayAPIDir is where the Gateway API CRDs are, here and (under
// config/crd/standard) in the gateway-api module.
const GatewayAPIDir = "gateway-api"

func readAll(pattern string) ([][]byte, error) {
	names, err := fs.Glob(crdFiles, pattern)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	files := make([][]byte, 0, len(names))
	for _, name := range names {
		data, err := crdFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		files = append(files, data)
	}
	return files, nil
}
