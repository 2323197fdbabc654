package policy

import (
	"fmt"
	"strings"
)

// Error is one problem with one object: which object, which field, what is
// wrong. Its text reads "HTTPRoute demo/split: spec.rules[0].backendRefs[1]:
// Service demo/nope not found".
type Error struct {
	// Kind is "HTTPRoute", "GRPCRoute" or "Service".
	Kind, Namespace, Name string
	// Field is the path of the field at fault, like
	// "spec.rules[0].matches[1].path.value" or
	// "metadata.annotations[skein.io/retry-limit]".
	Field string
	// Annotation names the annotation at fault, when it is one.
	Annotation string
	Problem    string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s/%s: ", e.Kind, e.Namespace, e.Name)
	switch {
	case e.Annotation != "":
		fmt.Fprintf(&b, "annotation %s: ", e.Annotation)
	case e.Field != "":
		fmt.Fprintf(&b, "%s: ", e.Field)
	}
	b.WriteString(e.Problem)
	return b.String()
}

// annotationError is a bad annotation of an object not named yet.
type annotationError struct {
	key, value string
	err        error
}

// objectRef names the object errors are about.
type objectRef struct{ kind, namespace, name string }

func (o objectRef) fail(field, format string, args ...any) *Error {
	return &Error{Kind: o.kind, Namespace: o.namespace, Name: o.name, Field: field, Problem: fmt.Sprintf(format, args...)}
}

func (o objectRef) annotationErrors(errs []*annotationError) []*Error {
	out := make([]*Error, 0, len(errs))
	for _, e := range errs {
		out = append(out, &Error{Kind: o.kind, Namespace: o.namespace, Name: o.name,
			Field: "metadata.annotations[" + e.key + "]", Annotation: e.key, Problem: e.err.Error()})
	}
	return out
}
