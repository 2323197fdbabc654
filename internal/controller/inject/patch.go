package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// PatchOperation is one RFC 6902 JSON Patch operation.
type PatchOperation struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value,omitempty"`
}

// patchedFields are the only parts of a pod Inject changes. The patch
// replaces each changed one whole, which is small and cannot go wrong on
// list indices; a field the API server knows and this package's k8s.io/api
// does not would be lost only inside these lists.
var patchedFields = []struct {
	path string
	get  func(*corev1.Pod) any
}{
	{"/metadata/annotations", func(p *corev1.Pod) any { return p.Annotations }},
	{"/spec/initContainers", func(p *corev1.Pod) any { return p.Spec.InitContainers }},
	{"/spec/containers", func(p *corev1.Pod) any { return p.Spec.Containers }},
	{"/spec/volumes", func(p *corev1.Pod) any { return p.Spec.Volumes }},
}

// Patch returns the JSON Patch that turns original into patched, as far as
// Inject changes pods: an "add" for a field original lacks, a "replace"
// for one that differs.
func Patch(original, patched *corev1.Pod) ([]PatchOperation, error) {
	var ops []PatchOperation
	for _, f := range patchedFields {
		before, err := json.Marshal(f.get(original))
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", f.path, err)
		}
		after, err := json.Marshal(f.get(patched))
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", f.path, err)
		}
		if bytes.Equal(before, after) {
			continue
		}
		op := "replace"
		if isEmptyJSON(before) {
			// Empty lists and maps are omitted from a pod's JSON.
			op = "add"
		}
		ops = append(ops, PatchOperation{Op: op, Path: f.path, Value: after})
	}
	return ops, nil
}

func isEmptyJSON(b []byte) bool {
	s := string(b)
	return s == "null" || s == "[]" || s == "{}"
}

// applyToObject applies ops made by Patch to a decoded JSON object (a pod,
// or a pod template inside another object), creating the parents of a
// path as needed. Only "add" and "replace" of object members are handled:
// all that Patch makes.
func applyToObject(obj map[string]any, ops []PatchOperation) error {
	for _, op := range ops {
		if op.Op != "add" && op.Op != "replace" {
			return fmt.Errorf("patch operation %q on %s is not supported", op.Op, op.Path)
		}
		var value any
		if err := json.Unmarshal(op.Value, &value); err != nil {
			return fmt.Errorf("patch value of %s: %w", op.Path, err)
		}
		keys := strings.Split(strings.TrimPrefix(op.Path, "/"), "/")
		parent := obj
		for _, key := range keys[:len(keys)-1] {
			child, ok := parent[key].(map[string]any)
			if !ok {
				child = map[string]any{}
				parent[key] = child
			}
			parent = child
		}
		parent[keys[len(keys)-1]] = value
	}
	return nil
}
