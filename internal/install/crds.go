package install

import (
	"bytes"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// crdObjects parses the CRD documents (a file may hold several, as
// controller-gen writes them) and returns them sorted by name.
func crdObjects(files [][]byte) ([]runtime.Object, error) {
	var crds []*unstructured.Unstructured
	for i, file := range files {
		for _, doc := range splitYAML(file) {
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
				return nil, fmt.Errorf("CRD document %d: %w", i, err)
			}
			if obj.GetAPIVersion() != "apiextensions.k8s.io/v1" || obj.GetKind() != "CustomResourceDefinition" || obj.GetName() == "" {
				return nil, fmt.Errorf("CRD document %d: %s %s %q is not an apiextensions.k8s.io/v1 CustomResourceDefinition",
					i, obj.GetAPIVersion(), obj.GetKind(), obj.GetName())
			}
			crds = append(crds, obj)
		}
	}
	sort.Slice(crds, func(i, j int) bool { return crds[i].GetName() < crds[j].GetName() })
	objs := make([]runtime.Object, len(crds))
	for i, crd := range crds {
		objs[i] = crd
	}
	return objs, nil
}

// CRDNames returns the names of the CRDs in files (what `skein check`
// expects to be established).
func CRDNames(files [][]byte) ([]string, error) {
	objs, err := crdObjects(files)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(objs))
	for i, obj := range objs {
		names[i] = obj.(*unstructured.Unstructured).GetName()
	}
	return names, nil
}

// splitYAML splits a multi-document YAML stream on "---" lines and drops
// empty documents.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, doc := range bytes.Split(append([]byte("\n"), data...), []byte("\n---")) {
		// A separator line may carry a comment or trailing spaces.
		if nl := bytes.IndexByte(doc, '\n'); nl >= 0 {
			doc = doc[nl+1:]
		} else {
			doc = nil
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
	return docs
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

// BundleVersion returns the Gateway API bundle version the CRDs in files
// carry (annotation gateway.networking.k8s.io/bundle-version), "" when
// they carry none or disagree.
func BundleVersion(files [][]byte) (string, error) {
	objs, err := crdObjects(files)
	if err != nil {
		return "", err
	}
	version := ""
	for i, obj := range objs {
		v := obj.(*unstructured.Unstructured).GetAnnotations()["gateway.networking.k8s.io/bundle-version"]
		if i > 0 && v != version {
			return "", nil
		}
		version = v
	}
	return version, nil
}

// CRDResource is what names the objects of one CRD: its name and the
// group, version (the storage one) and plural resource to list them by.
type CRDResource struct {
	Name     string
	Resource schema.GroupVersionResource
}

// CRDResources returns the resources of the CRDs in files, sorted by CRD
// name.
func CRDResources(files [][]byte) ([]CRDResource, error) {
	objs, err := crdObjects(files)
	if err != nil {
		return nil, err
	}
	out := make([]CRDResource, 0, len(objs))
	for _, obj := range objs {
		crd := obj.(*unstructured.Unstructured)
		group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
		plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
		versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
		var version string
		for _, v := range versions {
			v, _ := v.(map[string]any)
			if storage, _ := v["storage"].(bool); storage {
				version, _ = v["name"].(string)
			}
		}
		if group == "" || plural == "" || version == "" {
			return nil, fmt.Errorf("CRD %s: no spec.group, spec.names.plural or storage version", crd.GetName())
		}
		out = append(out, CRDResource{Name: crd.GetName(), Resource: schema.GroupVersionResource{Group: group, Version: version, Resource: plural}})
	}
	return out, nil
}
