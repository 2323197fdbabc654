package installed_test

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata/fake"

	"github.com/skeinmesh/skein/config"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/install/installed"
)

func TestCountCRDObjectsCountsEveryNamespace(t *testing.T) {
	files, err := config.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	crds, err := install.CRDResources(files)
	if err != nil {
		t.Fatal(err)
	}
	var workloads schema.GroupVersionResource
	for _, crd := range crds {
		if crd.Name == "workloads.skein.io" {
			workloads = crd.Resource
		}
	}
	if workloads != (schema.GroupVersionResource{Group: "skein.io", Version: "v1alpha1", Resource: "workloads"}) {
		t.Fatalf("workloads.skein.io lists as %v", workloads)
	}
	object := func(ns, name string) runtime.Object {
		return &metav1.PartialObjectMetadata{
			TypeMeta:   metav1.TypeMeta{APIVersion: "skein.io/v1alpha1", Kind: "Workload"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		}
	}
	scheme := fake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	client := fake.NewSimpleMetadataClient(scheme, object("shop", "vm-1"), object("shop", "vm-2"), object("other", "vm-3"))
	uses, err := installed.CountCRDObjects(context.Background(), client, crds)
	if err != nil {
		t.Fatal(err)
	}
	if len(uses) != len(crds) {
		t.Fatalf("%d counts for %d CRDs", len(uses), len(crds))
	}
	for _, u := range uses {
		want := 0
		if u.Name == "workloads.skein.io" {
			want = 3
		}
		if u.Objects != want || u.Absent {
			t.Errorf("%s: %d objects (absent %v), want %d", u.Name, u.Objects, u.Absent, want)
		}
	}
}
