// Package config carries the mesh's generated Kubernetes configuration into
// the binaries: the CustomResourceDefinitions controller-gen writes into
// crd/ from api/v1alpha1, which `skein install` renders.
package config

import (
	"embed"
	"io/fs"
	"sort"
)

//go:embed crd/*.yaml
var crdFiles embed.FS

// CRDs returns the CRD files, sorted by name, one YAML stream each.
func CRDs() ([][]byte, error) {
	names, err := fs.Glob(crdFiles, "crd/*.yaml")
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
