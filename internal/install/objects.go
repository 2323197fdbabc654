package install

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// Objects returns the objects of Render, in its order, decoded: typed
// (*corev1.Secret, *appsv1.Deployment, ...) where client-go knows the kind,
// *unstructured.Unstructured otherwise (the CRDs).
func Objects(cfg Config) ([]runtime.Object, error) {
	out, err := Render(cfg)
	if err != nil {
		return nil, err
	}
	return DecodeObjects(out)
}

// DecodeObjects decodes a multi-document YAML stream as Objects does.
func DecodeObjects(data []byte) ([]runtime.Object, error) {
	// client-go's kinds only: Helm's library adds the CRD kinds to client-go's
	// shared scheme, and what is typed must not depend on who was imported.
	sch := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(sch); err != nil {
		return nil, err
	}
	decode := serializer.NewCodecFactory(sch).UniversalDeserializer().Decode
	var objs []runtime.Object
	for i, doc := range splitYAML(data) {
		obj, _, err := decode(doc, nil, nil)
		if runtime.IsNotRegisteredError(err) {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &u.Object); err != nil {
				return nil, fmt.Errorf("document %d: %w", i, err)
			}
			obj, err = u, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}
