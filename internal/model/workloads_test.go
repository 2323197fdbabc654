package model

import (
	"net/netip"
	"testing"
)

func TestWorkloadsCountsInstancesAndMeshedOnes(t *testing.T) {
	m := New()
	w := m.Writer("test")
	for i, meshed := range []bool{true, true, false} {
		w.SetInstance(Instance{Namespace: "demo", Name: "web-" + string(rune('0'+i)), Workload: "web", ServiceAccount: "web",
			IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}), Ready: true, Meshed: meshed})
	}
	w.SetInstance(Instance{Namespace: "other", Name: "db-0", Workload: "db", ServiceAccount: "db", IP: netip.MustParseAddr("198.18.0.20")})
	got := m.Workloads("demo")
	if len(got) != 1 || got[0] != (WorkloadSummary{Namespace: "demo", Name: "web", ServiceAccount: "web", Instances: 3, Meshed: 2}) {
		t.Errorf("Workloads(demo) = %+v, want web with 3 instances, 2 meshed", got)
	}
	if all := m.Workloads(""); len(all) != 2 || all[0].Name != "web" || all[1].Name != "db" {
		t.Errorf("Workloads(\"\") = %+v, want demo/web then other/db", all)
	}
}
