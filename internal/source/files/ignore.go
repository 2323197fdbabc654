package files

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ignoredKinds are the kinds a manifest set written for Kubernetes
// usually holds that mean nothing to the model and whose absence changes
// nothing a user could rely on: a Workload's identity comes from its
// spec.serviceAccountName whether or not the ServiceAccount object exists.
// (A v1 Namespace is read: its skein.io/ annotations, such as
// skein.io/default-inbound-policy, apply to its workloads; namespaces need
// no object otherwise.)
// Such documents are decoded strictly (a typo is still an error), then left
// out with a note. Kinds that configure something (ConfigMap, Secret,
// NetworkPolicy, RBAC) are not here: leaving them
// out would be silently wrong, so they are refused.
var ignoredKinds = map[string]ignoredKind{
	"v1 ServiceAccount": {
		reason:    "a Workload's identity comes from its spec.serviceAccountName; the object itself is not needed",
		newObject: func() *ignoredObject { o := &corev1.ServiceAccount{}; return &ignoredObject{o, &o.ObjectMeta, true} },
	},
}

// runKinds are kinds that run processes on Kubernetes. Leaving them out
// would leave a user waiting for something that never starts, so they are
// refused with a pointer to the Workload.
var runKinds = map[string]bool{
	"v1 Pod":                   true,
	"apps/v1 Deployment":       true,
	"apps/v1 StatefulSet":      true,
	"apps/v1 DaemonSet":        true,
	"apps/v1 ReplicaSet":       true,
	"batch/v1 Job":             true,
	"batch/v1 CronJob":         true,
	"v1 ReplicationController": true,
}

type ignoredKind struct {
	reason    string
	newObject func() *ignoredObject
}

// ignoredObject is a decoded document of an ignored kind.
type ignoredObject struct {
	object     any
	meta       *metav1.ObjectMeta
	namespaced bool
}

// Ignored is a document that was read, checked and left out.
type Ignored struct {
	File      string
	Document  int    // 1-based index in File
	Kind      string // "apiVersion Kind", e.g. "v1 Namespace"
	Namespace string // empty for a cluster-scoped kind
	Name      string
	Reason    string
}

func (i Ignored) String() string {
	name := i.Name
	if i.Namespace != "" {
		name = i.Namespace + "/" + name
	}
	return fmt.Sprintf("%s: document %d (%s %s) ignored: %s", i.File, i.Document, i.Kind, name, i.Reason)
}

func ignoredOf(objects []*object) []Ignored {
	var out []Ignored
	for _, o := range objects {
		if o.ignored == nil {
			continue
		}
		kind := o.apiVersion + " " + o.kind
		out = append(out, Ignored{
			File: o.file, Document: o.document, Kind: kind,
			Namespace: o.meta.Namespace, Name: o.meta.Name, Reason: ignoredKinds[kind].reason,
		})
	}
	return out
}

func ignoredKindNames() []string {
	return slices.Sorted(maps.Keys(ignoredKinds))
}

// NoteIgnored logs one line per document left out, naming its file and
// object and why, so that a user sees what was not acted on.
func NoteIgnored(log *slog.Logger, level slog.Level, ignored []Ignored) {
	for _, i := range ignored {
		log.Log(context.Background(), level, "manifest document ignored", "file", i.File, "document", i.Document,
			"kind", i.Kind, "namespace", i.Namespace, "name", i.Name, "reason", i.Reason)
	}
}
