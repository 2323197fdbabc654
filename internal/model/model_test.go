package model

import (
	"context"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// fixture is a small mesh: web (selector, mixed readiness and meshing) and
// db (EndpointSlices, opaque).
func fixture() *Model {
	m := New()
	w := m.Writer("test")
	w.SetService(webService)
	w.SetInstance(webInstance("web-0", "10.0.0.1", true, true))
	w.SetInstance(webInstance("web-1", "10.0.0.2", false, true))
	unmeshed := webInstance("web-2", "10.0.0.3", true, false)
	unmeshed.Ports = nil
	w.SetInstance(unmeshed)
	w.SetInstance(Instance{Namespace: "demo", Name: "other-0", Workload: "other", Labels: map[string]string{"app": "other"}, IP: ip("10.0.0.9"), Ready: true, Meshed: true})

	w.SetService(Service{
		Namespace: "demo", Name: "db",
		Ports:       []ServicePort{{Name: "mysql", Port: 3306}},
		Selector:    map[string]string{"app": "db"},
		OpaquePorts: []uint16{3306},
	})
	w.SetInstance(Instance{Namespace: "demo", Name: "db-0", Workload: "db", Labels: map[string]string{"app": "db"}, ServiceAccount: "db", IP: ip("10.0.1.1"), Ready: true, Meshed: true})
	w.SetEndpointSlice(EndpointSlice{
		Namespace: "demo", Name: "db-abc", Service: "db",
		Ports: []SlicePort{{Name: "mysql", Port: 3306}},
		Endpoints: []SliceEndpoint{
			{Addresses: []netip.Addr{ip("10.0.1.1")}, Ready: true, Pod: "db-0"},
			{Addresses: []netip.Addr{ip("10.0.1.2")}, Ready: true, Pod: "db-x"},
			{Addresses: []netip.Addr{ip("10.0.1.3")}, Ready: false, Pod: "db-y"},
		},
	})
	return m
}

func TestResolve(t *testing.T) {
	web0 := func(port uint16) Endpoint {
		return Endpoint{
			Addr: netip.AddrPortFrom(ip("10.0.0.1"), port), Weight: 1,
			Labels:   map[string]string{"namespace": "demo", "service": "web", "workload": "web", "pod": "web-0"},
			Identity: "spiffe://cluster.local/ns/demo/sa/web",
		}
	}
	web2 := Endpoint{
		Addr: netip.MustParseAddrPort("10.0.0.3:8080"), Weight: 1,
		Labels: map[string]string{"namespace": "demo", "service": "web", "workload": "web", "pod": "web-2"},
	}
	webHTTP := EndpointSet{Exists: true, Service: "demo/web", Endpoints: []Endpoint{web0(8080), web2}}
	tests := []struct {
		dst  string
		want EndpointSet
	}{
		{"web.demo.svc.cluster.local:80", webHTTP},
		{"WEB.demo.svc.cluster.local.:80", webHTTP},
		{"10.96.0.10:80", webHTTP},
		// only web-0 declares the named target port; web-1 is not ready
		{"web.demo.svc.cluster.local:9090", EndpointSet{Exists: true, Service: "demo/web", Endpoints: []Endpoint{web0(9091)}}},
		{"web.demo.svc.cluster.local:81", EndpointSet{}},
		{"nope.demo.svc.cluster.local:80", EndpointSet{}},
		{"web.demo.svc.other.domain:80", EndpointSet{}},
		{"example.com:443", EndpointSet{}},
		{"10.9.9.9:80", EndpointSet{}},
		// a pod dialled directly: itself, ready or not
		{"10.0.0.2:8080", EndpointSet{Exists: true, Endpoints: []Endpoint{{
			Addr: netip.MustParseAddrPort("10.0.0.2:8080"), Weight: 1,
			Labels:   map[string]string{"namespace": "demo", "workload": "web", "pod": "web-1"},
			Identity: "spiffe://cluster.local/ns/demo/sa/web",
		}}}},
		// slices are the truth: the selector is ignored, unknown pods have no identity
		{"db.demo.svc.cluster.local:3306", EndpointSet{Exists: true, Service: "demo/db", OpaquePorts: []uint16{3306}, Endpoints: []Endpoint{
			{Addr: netip.MustParseAddrPort("10.0.1.1:3306"), Weight: 1, Protocol: "opaque",
				Labels:   map[string]string{"namespace": "demo", "service": "db", "workload": "db", "pod": "db-0"},
				Identity: "spiffe://cluster.local/ns/demo/sa/db"},
			{Addr: netip.MustParseAddrPort("10.0.1.2:3306"), Weight: 1, Protocol: "opaque",
				Labels: map[string]string{"namespace": "demo", "service": "db", "pod": "db-x"}},
		}}},
	}
	m := fixture()
	for _, tt := range tests {
		t.Run(tt.dst, func(t *testing.T) {
			got := next(t, watch(t, m, tt.dst))
			if got.Exists != (got.Version != 0) {
				t.Errorf("version %d for a set that exists=%v: want a version exactly when it exists", got.Version, got.Exists)
			}
			got.Version = 0 // an identity, not content
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestWatchRejectsDestinationWithoutPort(t *testing.T) {
	for _, dst := range []string{"web.demo.svc.cluster.local", "10.0.0.1:0", "10.0.0.1:http", ""} {
		if err := New().Watch(t.Context(), dst, func(EndpointSet) {}); err == nil {
			t.Errorf("Watch(%q) succeeded, want an error", dst)
		}
	}
}

func TestTrustDomainOption(t *testing.T) {
	m := New(WithTrustDomain("example.org"))
	m.Writer("test").SetService(webService)
	m.Writer("test").SetInstance(webInstance("web-0", "10.0.0.1", true, true))
	got := next(t, watch(t, m, "10.96.0.10:80"))
	if len(got.Endpoints) != 1 || got.Endpoints[0].Identity != "spiffe://example.org/ns/demo/sa/web" {
		t.Fatalf("endpoints = %+v, want identity in trust domain example.org", got.Endpoints)
	}
}

func TestWatcherSeesScaleUpDownAndReadiness(t *testing.T) {
	m := New()
	w := m.Writer("test")
	const dst = "web.demo.svc.cluster.local:80"
	sets := watch(t, m, dst)
	if got := next(t, sets); got.Exists {
		t.Fatalf("before the service exists: %+v", got)
	}
	w.SetService(webService)
	if got := next(t, sets); !got.Exists || len(got.Endpoints) != 0 {
		t.Fatalf("service without instances: %+v", got)
	}
	steps := []struct {
		name  string
		write func()
		want  []string
	}{
		{"scale up", func() { w.SetInstance(webInstance("web-0", "10.0.0.1", true, true)) }, []string{"10.0.0.1:8080"}},
		{"scale up again", func() { w.SetInstance(webInstance("web-1", "10.0.0.2", true, true)) }, []string{"10.0.0.1:8080", "10.0.0.2:8080"}},
		{"not ready", func() { w.SetInstance(webInstance("web-0", "10.0.0.1", false, true)) }, []string{"10.0.0.2:8080"}},
		{"ready again", func() { w.SetInstance(webInstance("web-0", "10.0.0.1", true, true)) }, []string{"10.0.0.1:8080", "10.0.0.2:8080"}},
		{"scale down", func() { w.DeleteInstance("demo", "web-1") }, []string{"10.0.0.1:8080"}},
		{"new address", func() { w.SetInstance(webInstance("web-0", "10.0.0.7", true, true)) }, []string{"10.0.0.7:8080"}},
	}
	for _, step := range steps {
		step.write()
		if got := addrs(next(t, sets)); !slices.Equal(got, step.want) {
			t.Fatalf("%s: endpoints %v, want %v", step.name, got, step.want)
		}
	}
	w.DeleteService("demo", "web")
	if got := next(t, sets); got.Exists {
		t.Fatalf("after deleting the service: %+v", got)
	}
}

func TestUnrelatedChangeDoesNotNotify(t *testing.T) {
	m := fixture()
	w := m.Writer("test")
	const dst = "web.demo.svc.cluster.local:80"
	sets := watch(t, m, dst)
	initial := next(t, sets)

	w.SetInstance(Instance{Namespace: "demo", Name: "other-1", Labels: map[string]string{"app": "other"}, IP: ip("10.0.0.10"), Ready: true})
	elsewhere := webInstance("web-3", "10.0.5.3", true, true) // app=web, in another namespace
	elsewhere.Namespace = "other"
	w.SetInstance(elsewhere)
	w.DeleteInstance("other", "web-3")
	w.SetService(Service{Namespace: "other", Name: "web", Ports: webService.Ports, Selector: webService.Selector})
	w.SetInstance(webInstance("web-1", "10.0.0.2", false, true)) // rewritten, still not ready
	if n := topicChanges(t, m, dst); n != 0 {
		t.Fatalf("set changed %d times after unrelated writes", n)
	}

	w.DeleteInstance("demo", "web-2")
	got := next(t, sets)
	if len(got.Endpoints) != len(initial.Endpoints)-1 {
		t.Fatalf("after deleting web-2: %v (was %v)", addrs(got), addrs(initial))
	}
	if n := topicChanges(t, m, dst); n != 1 {
		t.Fatalf("set changed %d times, want 1", n)
	}
}

func TestSliceEndpointFollowsItsPod(t *testing.T) {
	m := fixture()
	sets := watch(t, m, "db.demo.svc.cluster.local:3306")
	next(t, sets)
	// db-x appears in the model as a meshed pod: its endpoint gains the identity
	m.Writer("test").SetInstance(Instance{Namespace: "demo", Name: "db-x", Workload: "db", ServiceAccount: "db", IP: ip("10.0.1.2"), Ready: true, Meshed: true})
	got := next(t, sets)
	if len(got.Endpoints) != 2 || got.Endpoints[1].Identity != "spiffe://cluster.local/ns/demo/sa/db" {
		t.Fatalf("endpoints %+v, want 10.0.1.2 with the db identity", got.Endpoints)
	}
	// without slices the service falls back to its selector (app=db: db-0 only)
	m.Writer("test").DeleteEndpointSlice("demo", "db-abc")
	if got := addrs(next(t, sets)); !slices.Equal(got, []string{"10.0.1.1:3306"}) {
		t.Fatalf("after deleting the slice: %v", got)
	}
}

// TestExternalInstanceJoinsASliceBackedService: Kubernetes' slices list
// pods only, so a Workload's address (a VM) the selector matches is added
// to them; a pod the slices leave out is not.
func TestExternalInstanceJoinsASliceBackedService(t *testing.T) {
	m := fixture()
	sets := watch(t, m, "db.demo.svc.cluster.local:3306")
	if got := addrs(next(t, sets)); !slices.Equal(got, []string{"10.0.1.1:3306", "10.0.1.2:3306"}) {
		t.Fatalf("before: %v", got)
	}
	w := m.Writer("test")
	vm := Instance{
		Namespace: "demo", Name: "db-vm-0", Workload: "db-vm", Labels: map[string]string{"app": "db"},
		ServiceAccount: "db", IP: ip("192.168.7.1"), Ready: true, Meshed: true, External: true,
	}
	w.SetInstance(vm)
	got := next(t, sets)
	if want := []string{"10.0.1.1:3306", "10.0.1.2:3306", "192.168.7.1:3306"}; !slices.Equal(addrs(got), want) {
		t.Fatalf("with the VM: %v, want %v", addrs(got), want)
	}
	if id := got.Endpoints[2].Identity; id != "spiffe://cluster.local/ns/demo/sa/db" {
		t.Errorf("the VM's endpoint has identity %q", id)
	}
	// A pod the slices do not list stays out, even when the selector
	// matches it.
	w.SetInstance(Instance{Namespace: "demo", Name: "db-9", Workload: "db", Labels: map[string]string{"app": "db"}, IP: ip("10.0.1.9"), Ready: true})
	vm.Ready = false
	w.SetInstance(vm)
	if got := addrs(next(t, sets)); !slices.Equal(got, []string{"10.0.1.1:3306", "10.0.1.2:3306"}) {
		t.Fatalf("with the VM unready and an unlisted pod: %v", got)
	}
}

func TestReplaceSwapsOnlyItsSourceAtOnce(t *testing.T) {
	m := New()
	files, kube := m.Writer("files"), m.Writer("kube")
	kube.SetService(webService)
	kube.SetInstance(webInstance("web-k", "10.0.0.1", true, true))
	files.Replace(Snapshot{Instances: []Instance{webInstance("web-0", "10.0.0.2", true, true)}})

	const dst = "web.demo.svc.cluster.local:80"
	sets := watch(t, m, dst)
	if got := addrs(next(t, sets)); !slices.Equal(got, []string{"10.0.0.1:8080", "10.0.0.2:8080"}) {
		t.Fatalf("initial: %v", got)
	}
	files.Replace(Snapshot{Instances: []Instance{
		webInstance("web-1", "10.0.0.3", true, true),
		webInstance("web-2", "10.0.0.4", true, true),
	}})
	if got := addrs(next(t, sets)); !slices.Equal(got, []string{"10.0.0.1:8080", "10.0.0.3:8080", "10.0.0.4:8080"}) {
		t.Fatalf("after Replace: %v", got)
	}
	if n := topicChanges(t, m, dst); n != 1 {
		t.Fatalf("Replace changed the set %d times, want once", n)
	}
	files.Replace(Snapshot{})
	if got := addrs(next(t, sets)); !slices.Equal(got, []string{"10.0.0.1:8080"}) {
		t.Fatalf("after an empty Replace: %v", got)
	}
}

func TestSameObjectFromTwoSources(t *testing.T) {
	m := New()
	a, b := m.Writer("a"), m.Writer("b")
	b.SetService(webService)
	b.SetInstance(webInstance("web-0", "10.0.0.1", true, true))
	sets := watch(t, m, "web.demo.svc.cluster.local:80")
	next(t, sets)
	a.SetInstance(webInstance("web-0", "10.0.0.2", true, true)) // "a" sorts first: it wins
	if got := addrs(next(t, sets)); !slices.Equal(got, []string{"10.0.0.2:8080"}) {
		t.Fatalf("with both sources: %v", got)
	}
	a.DeleteInstance("demo", "web-0")
	if got := addrs(next(t, sets)); !slices.Equal(got, []string{"10.0.0.1:8080"}) {
		t.Fatalf("after source a deleted it: %v", got)
	}
}

func TestWatchStopsWithItsContext(t *testing.T) {
	m := fixture()
	ctx, cancel := context.WithCancel(context.Background())
	sets := make(chan EndpointSet, 16)
	if err := m.Watch(ctx, "web.demo.svc.cluster.local:80", func(s EndpointSet) { sets <- s }); err != nil {
		t.Fatal(err)
	}
	next(t, sets)
	if got := m.ActiveWatches(); got != 1 {
		t.Fatalf("ActiveWatches = %d, want 1", got)
	}
	cancel()
	waitFor(t, func() bool { return m.ActiveWatches() == 0 })
	m.mu.Lock()
	n := len(m.topics) + len(m.topicsByService) + len(m.topicsByIP)
	m.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d topic entries left after the only watch ended", n)
	}
	m.Writer("test").DeleteService("demo", "web")
	if len(sets) != 0 {
		t.Fatalf("a cancelled watch received %v", <-sets)
	}
}

func TestParseOpaquePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    []uint16
		wantErr bool
	}{
		{"", nil, false},
		{"3306", []uint16{3306}, false},
		{"3306, 25,3306", []uint16{25, 3306}, false},
		{"5432-5434,80", []uint16{80, 5432, 5433, 5434}, false},
		{"0", nil, true},
		{"70000", nil, true},
		{"mysql", nil, true},
		{"10-5", nil, true},
		{"5-", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseOpaquePorts(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParseOpaquePorts(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// A source that says again what it said (a files reload, an informer
// resync) changes nothing: no destination is recomputed.
func TestReplaceWithTheSameInstancesChangesNothing(t *testing.T) {
	m := New()
	w := m.Writer("files")
	snap := func(ready bool) Snapshot {
		return Snapshot{
			Services:  []Service{webService},
			Instances: []Instance{webInstance("web-1", "10.0.0.1", true, true), webInstance("web-2", "10.0.0.2", ready, true)},
		}
	}
	w.Replace(snap(true))
	const dst = "web.demo.svc.cluster.local:80"
	sets := watch(t, m, dst)
	if got := addrs(next(t, sets)); len(got) != 2 {
		t.Fatalf("endpoints %v, want 2", got)
	}
	resolved := topicResolves(t, m, dst)
	w.Replace(snap(true)) // equal copies, new maps
	if n := topicResolves(t, m, dst) - resolved; n != 0 {
		t.Fatalf("the same snapshot again recomputed the set %d times", n)
	}
	w.Replace(snap(false))
	if got := addrs(next(t, sets)); len(got) != 1 {
		t.Fatalf("endpoints %v after web-2 became unready, want 1", got)
	}
}

// equal must look at every field: one it skipped would make a real change
// look like a repeat.
func TestInstanceEqualSeesEveryField(t *testing.T) {
	base := webInstance("web-1", "10.0.0.1", true, true)
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		changed := base
		changed.Labels, changed.Ports = maps.Clone(base.Labels), maps.Clone(base.Ports)
		f := reflect.ValueOf(&changed).Elem().Field(i)
		switch v := f.Addr().Interface().(type) {
		case *string:
			*v += "-changed"
		case *bool:
			*v = !*v
		case *netip.Addr:
			*v = ip("10.9.9.9")
		case *map[string]string:
			m := maps.Clone(*v)
			if m == nil {
				m = map[string]string{}
			}
			m["changed"] = "yes"
			*v = m
		case *map[string]uint16:
			(*v)["changed"] = 1
		case *[]ProbePath:
			*v = append(slices.Clone(*v), ProbePath{Port: 1, Path: "/changed"})
		default:
			t.Fatalf("field %s has a type this test cannot change: teach it, and Instance.equal", typ.Field(i).Name)
		}
		if base.equal(changed) {
			t.Errorf("Instance.equal ignores field %s", typ.Field(i).Name)
		}
	}
	if !base.equal(webInstance("web-1", "10.0.0.1", true, true)) {
		t.Error("equal instances are not equal")
	}
}
