package inject

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// templatePaths says where each kind that makes pods keeps its pod
// template, by "group/Kind" ("/Pod" for the core group); the object itself
// for a Pod.
var templatePaths = map[string][]string{
	"/Pod":                   nil,
	"apps/Deployment":        {"spec", "template"},
	"apps/StatefulSet":       {"spec", "template"},
	"apps/DaemonSet":         {"spec", "template"},
	"apps/ReplicaSet":        {"spec", "template"},
	"batch/Job":              {"spec", "template"},
	"batch/CronJob":          {"spec", "jobTemplate", "spec", "template"},
	"/ReplicationController": {"spec", "template"},
}

// Manifests injects the proxy into every pod and pod template of the
// multi-document YAML read from r and writes the result to w, as `skein
// inject` does offline: every workload is injected unless its template is
// annotated skein.io/inject: disabled, or is already injected. Other
// documents are copied unchanged; so are the parts of an injected object
// that injection does not touch.
func Manifests(r io.Reader, w io.Writer, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for i := 1; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		out, err := injectDocument(doc, cfg)
		if err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		if i > 1 {
			out = append([]byte("---\n"), out...)
		}
		if !bytes.HasSuffix(out, []byte("\n")) {
			out = append(out, '\n')
		}
		if _, err := w.Write(out); err != nil {
			return err
		}
	}
}

// injectDocument returns doc itself when nothing in it is injected.
func injectDocument(doc []byte, cfg Config) ([]byte, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	if obj == nil {
		return doc, nil // only comments
	}
	changed, err := injectObject(obj, cfg)
	if err != nil || !changed {
		return doc, err
	}
	return yaml.Marshal(obj)
}

// injectObject injects obj's pod template in place, or the items of a
// v1 List.
func injectObject(obj map[string]any, cfg Config) (bool, error) {
	var meta struct {
		metav1.TypeMeta
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := convert(obj, &meta); err != nil {
		return false, err
	}
	group, _, _ := strings.Cut(meta.APIVersion, "/")
	if !strings.Contains(meta.APIVersion, "/") {
		group = ""
	}
	if group == "" && meta.Kind == "List" {
		return injectListItems(obj, cfg)
	}
	path, ok := templatePaths[group+"/"+meta.Kind]
	if !ok {
		return false, nil
	}
	template, ok := lookup(obj, path)
	if !ok {
		return false, fmt.Errorf("%s %s: no pod template at %s", meta.Kind, meta.Metadata.Name, strings.Join(path, "."))
	}
	var pod corev1.Pod
	if err := convert(template, &pod); err != nil {
		return false, fmt.Errorf("%s %s: pod template: %w", meta.Kind, meta.Metadata.Name, err)
	}
	pod.Namespace = meta.Metadata.Namespace
	if meta.Kind != "Pod" {
		// So that the proxy's workload label is the object's name.
		pod.Name = ""
		pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: meta.APIVersion, Kind: meta.Kind, Name: meta.Metadata.Name, Controller: ptr(true)}}
	}
	enabled := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        meta.Metadata.Namespace,
		Annotations: map[string]string{AnnotationInject: InjectEnabled},
	}}
	patched, injected, err := Inject(&pod, enabled, cfg)
	if err != nil || !injected {
		return false, err
	}
	ops, err := Patch(&pod, patched)
	if err != nil {
		return false, err
	}
	if err := applyToObject(template, ops); err != nil {
		return false, err
	}
	dropEmptyResources(template)
	return true, nil
}

func injectListItems(list map[string]any, cfg Config) (bool, error) {
	items, _ := list["items"].([]any)
	changed := false
	for i, item := range items {
		obj, ok := item.(map[string]any)
		if !ok {
			continue
		}
		c, err := injectObject(obj, cfg)
		if err != nil {
			return false, fmt.Errorf("items[%d]: %w", i, err)
		}
		changed = changed || c
	}
	return changed, nil
}

// convert decodes a generic JSON object into a typed one.
func convert(from any, to any) error {
	b, err := json.Marshal(from)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, to)
}

func lookup(obj map[string]any, path []string) (map[string]any, bool) {
	for _, key := range path {
		next, ok := obj[key].(map[string]any)
		if !ok {
			return nil, false
		}
		obj = next
	}
	return obj, true
}

// dropEmptyResources removes the "resources: {}" that re-encoding a
// container adds, so the output differs from the input only where it must.
func dropEmptyResources(template map[string]any) {
	spec, _ := template["spec"].(map[string]any)
	for _, list := range []string{"initContainers", "containers"} {
		containers, _ := spec[list].([]any)
		for _, c := range containers {
			if c, ok := c.(map[string]any); ok {
				if r, ok := c["resources"].(map[string]any); ok && len(r) == 0 {
					delete(c, "resources")
				}
			}
		}
	}
}
