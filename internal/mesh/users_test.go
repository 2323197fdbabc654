package mesh

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/api/v1alpha1"
)

func TestEveryWorkloadGetsUsersOfItsOwnThatStay(t *testing.T) {
	m := &Mesh{userIndex: map[string]int{}}
	workload := func(ns, name string) *v1alpha1.Workload {
		return &v1alpha1.Workload{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	seen := map[int]string{}
	first := map[string]workloadUsers{}
	for _, w := range []*v1alpha1.Workload{workload("shop", "web"), workload("shop", "api"), workload("other", "web")} {
		u, err := m.usersFor(w)
		if err != nil {
			t.Fatal(err)
		}
		key := workloadKey(w)
		first[key] = u
		for _, id := range []int{u.app.UID, u.app.GID, u.proxy.UID, u.proxy.GID} {
			if uidTaken(id) {
				t.Errorf("%s got id %d, which the machine already uses", key, id)
			}
		}
		if u.app.UID < appUIDBase || u.app.UID >= appUIDBase+maxWorkloads || u.proxy.UID != u.app.UID-appUIDBase+proxyUIDBase {
			t.Errorf("%s: users %+v, want app uid in %d.. and proxy uid the same number in %d..", key, u, appUIDBase, proxyUIDBase)
		}
		for _, id := range []int{u.app.UID, u.proxy.UID} {
			if other, dup := seen[id]; dup {
				t.Errorf("uid %d given to %s and %s", id, other, key)
			}
			seen[id] = key
		}
	}
	// Asked again (a replica added, a reload): the same users.
	for key, want := range first {
		ns, name, _ := strings.Cut(key, "/")
		if got, _ := m.usersFor(workload(ns, name)); got.app.UID != want.app.UID || got.proxy.UID != want.proxy.UID {
			t.Errorf("%s: users %+v the second time, want %+v", key, got, want)
		}
	}
}
