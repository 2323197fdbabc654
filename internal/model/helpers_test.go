package model

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// watch starts a watch of dst that lasts until the test ends and returns the
// sets it receives, in order.
func watch(t testing.TB, m *Model, dst string) <-chan EndpointSet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sets := make(chan EndpointSet, 64)
	if err := m.Watch(ctx, dst, func(s EndpointSet) { sets <- s }); err != nil {
		t.Fatalf("Watch(%q): %v", dst, err)
	}
	return sets
}

// next waits for the next set; the deadline only keeps a broken test from
// hanging.
func next(t testing.TB, sets <-chan EndpointSet) EndpointSet {
	t.Helper()
	select {
	case s := <-sets:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no endpoint set received")
		return EndpointSet{}
	}
}

// addrs lists a set's endpoint addresses as strings.
func addrs(s EndpointSet) []string {
	out := make([]string, 0, len(s.Endpoints))
	for _, e := range s.Endpoints {
		out = append(out, e.Addr.String())
	}
	return out
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// topicChanges reads how often a watched destination's set changed.
func topicChanges(t testing.TB, m *Model, dst string) int {
	t.Helper()
	return readTopic(t, m, dst).changes
}

// topicResolves reads how often a watched destination's set was computed.
func topicResolves(t testing.TB, m *Model, dst string) int {
	t.Helper()
	return readTopic(t, m, dst).resolves
}

func readTopic(t testing.TB, m *Model, dst string) topic {
	t.Helper()
	key, err := m.parseDst(dst)
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	tp, ok := m.topics[key]
	if !ok {
		t.Fatalf("%s is not watched", dst)
	}
	return *tp
}

func webInstance(name, addr string, ready, meshed bool) Instance {
	return Instance{
		Namespace: "demo", Name: name, Workload: "web",
		Labels:         map[string]string{"app": "web"},
		ServiceAccount: "web", IP: ip(addr),
		Ports: map[string]uint16{"grpc": 9091},
		Ready: ready, Meshed: meshed,
	}
}

var webService = Service{
	Namespace: "demo", Name: "web",
	ClusterIPs: []netip.Addr{ip("10.96.0.10")},
	Ports: []ServicePort{
		{Name: "http", Port: 80, TargetPort: 8080},
		{Name: "grpc", Port: 9090, TargetPortName: "grpc"},
	},
	Selector: map[string]string{"app": "web"},
}

// waitFor polls cond; the deadline only keeps a broken test from hanging.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}
