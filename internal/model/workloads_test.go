package model

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

func TestWorkloadsCountsInstancesMeshedAndReadyOnes(t *testing.T) {
	m := New()
	w := m.Writer("test")
	for i, meshed := range []bool{true, true, false} {
		w.SetInstance(Instance{Namespace: "demo", Name: "web-" + string(rune('0'+i)), Workload: "web", ServiceAccount: "web",
			IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}), Ready: i != 1, Meshed: meshed})
	}
	w.SetInstance(Instance{Namespace: "other", Name: "db-0", Workload: "db", ServiceAccount: "db", IP: netip.MustParseAddr("198.18.0.20")})
	got := m.Workloads("demo")
	want := WorkloadSummary{Namespace: "demo", Name: "web", ServiceAccount: "web", Instances: 3, Meshed: 2, Ready: 2,
		Replicas: []ReplicaState{{"web-0", true, true}, {"web-1", true, false}, {"web-2", false, true}}}
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Errorf("Workloads(demo) = %+v, want %+v", got, want)
	}
	if all := m.Workloads(""); len(all) != 2 || all[0].Name != "web" || all[1].Name != "db" {
		t.Errorf("Workloads(\"\") = %+v, want demo/web then other/db", all)
	}
}

func TestLookupsForTap(t *testing.T) {
	m := New()
	w := m.Writer("test")
	w.Replace(Snapshot{
		Namespaces: []Namespace{{Name: "demo", Annotations: map[string]string{"skein.io/tap-body-bytes": "10"}}},
		Services: []Service{
			{Namespace: "demo", Name: "web", Selector: map[string]string{"app": "web"}, Ports: []ServicePort{{Port: 80}}},
			{Namespace: "demo", Name: "sliced", Selector: map[string]string{"app": "web"}, Ports: []ServicePort{{Name: "http", Port: 80}}},
		},
		EndpointSlices: []EndpointSlice{{Namespace: "demo", Name: "sliced-1", Service: "sliced",
			Endpoints: []SliceEndpoint{{Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, Ready: true, Pod: "web-2"}}}},
		Instances: []Instance{
			{Namespace: "demo", Name: "web-2", Workload: "web", Labels: map[string]string{"app": "web"}, IP: netip.MustParseAddr("10.0.0.2")},
			{Namespace: "demo", Name: "web-1", Workload: "web", Labels: map[string]string{"app": "web"}, IP: netip.MustParseAddr("10.0.0.1")},
			{Namespace: "demo", Name: "db-0", Workload: "db", IP: netip.MustParseAddr("10.0.0.3")},
			{Namespace: "other", Name: "x-0", Workload: "x"},
		},
	})
	names := func(in []Instance) (out []string) {
		for _, i := range in {
			out = append(out, i.Name)
		}
		return out
	}
	if got := names(m.Instances("demo")); !slices.Equal(got, []string{"db-0", "web-1", "web-2"}) {
		t.Errorf("Instances(demo) = %v", got)
	}
	if got, ok := m.ServiceInstances("demo", "web"); !ok || !slices.Equal(names(got), []string{"web-1", "web-2"}) {
		t.Errorf("ServiceInstances(web) = %v, %v", names(got), ok)
	}
	// A service with slices: the pods its slices name (not what its
	// selector picks).
	if got, ok := m.ServiceInstances("demo", "sliced"); !ok || !slices.Equal(names(got), []string{"web-2"}) {
		t.Errorf("ServiceInstances(sliced) = %v, %v", names(got), ok)
	}
	if _, ok := m.ServiceInstances("demo", "nope"); ok {
		t.Error("ServiceInstances of an unknown service")
	}
	if got := m.NamespaceAnnotations("demo")["skein.io/tap-body-bytes"]; got != "10" {
		t.Errorf("NamespaceAnnotations(demo) = %q", got)
	}
	if _, ok := m.Service("demo", "web"); !ok {
		t.Error("Service(demo/web) not found")
	}
}
