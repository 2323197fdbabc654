package destination

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/model/modeltest"
	destinationpb "github.com/skeinmesh/skein/proto/destination"
)

// startServer serves a Destination server over w on a loopback socket.
func startServer(t testing.TB, w model.Watcher, reg prometheus.Registerer) string {
	t.Helper()
	_, addr := serve(t, w, reg, Limits{})
	return addr
}

// serve is startServer with limits that also returns the Server.
func serve(t testing.TB, w model.Watcher, reg prometheus.Registerer, limits Limits) (*Server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(w, slog.New(slog.DiscardHandler), reg, limits)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return srv, lis.Addr().String()
}

func dial(t testing.TB, addr string) destinationpb.DestinationClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return destinationpb.NewDestinationClient(conn)
}

func ep(addr string, weight uint32) model.Endpoint {
	return model.Endpoint{
		Addr:     netip.MustParseAddrPort(addr),
		Weight:   weight,
		Labels:   map[string]string{"namespace": "demo", "pod": "web-" + addr},
		Identity: "spiffe://cluster.local/ns/demo/sa/web",
		Protocol: "h2",
	}
}

func pbEp(addr string, weight uint32) *destinationpb.Endpoint {
	return toProtoEndpoint(ep(addr, weight))
}

func snapshot(service string, opaque []uint32, eps ...*destinationpb.Endpoint) *destinationpb.Update {
	return &destinationpb.Update{Kind: &destinationpb.Update_Snapshot{Snapshot: &destinationpb.EndpointSet{
		Service: service, Endpoints: eps, OpaquePorts: opaque,
	}}}
}

func add(eps ...*destinationpb.Endpoint) *destinationpb.Update {
	return &destinationpb.Update{Kind: &destinationpb.Update_Add{Add: &destinationpb.Endpoints{Endpoints: eps}}}
}

func remove(addrs ...string) *destinationpb.Update {
	return &destinationpb.Update{Kind: &destinationpb.Update_Remove{Remove: &destinationpb.Addresses{Addresses: addrs}}}
}

const (
	a = "10.0.0.1:8080"
	b = "10.0.0.2:8080"
	c = "10.0.0.3:8080"
	d = "10.0.0.4:8080"
	e = "10.0.0.5:8080"
)

func TestGetSendsSnapshotThenDeltas(t *testing.T) {
	const dst = "web.demo.svc.cluster.local:8080"
	set := func(opaque []uint16, eps ...model.Endpoint) model.EndpointSet {
		return model.EndpointSet{Exists: true, Service: "demo/web", Endpoints: eps, OpaquePorts: opaque}
	}
	steps := []struct {
		name string
		set  model.EndpointSet
		want []*destinationpb.Update // nil: nothing is sent
	}{
		{"first is a snapshot", set(nil, ep(a, 1), ep(b, 1)), []*destinationpb.Update{snapshot("demo/web", nil, pbEp(a, 1), pbEp(b, 1))}},
		{"new endpoint is an add", set(nil, ep(a, 1), ep(b, 1), ep(c, 1)), []*destinationpb.Update{add(pbEp(c, 1))}},
		{"gone endpoint is a remove", set(nil, ep(a, 1), ep(c, 1)), []*destinationpb.Update{remove(b)}},
		{"changed endpoint is an add", set(nil, ep(a, 5), ep(c, 1)), []*destinationpb.Update{add(pbEp(a, 5))}},
		{"add and remove together, adds first", set(nil, ep(a, 5), ep(c, 1), ep(d, 1), ep(e, 1)), []*destinationpb.Update{add(pbEp(d, 1), pbEp(e, 1))}},
		{"both kinds", set(nil, ep(a, 5), ep(c, 1), ep(d, 1), ep(b, 1)), []*destinationpb.Update{add(pbEp(b, 1)), remove(e)}},
		{"unchanged set sends nothing", set(nil, ep(a, 5), ep(c, 1), ep(d, 1), ep(b, 1)), nil},
		{"delta as big as the set is a snapshot", set(nil, ep(d, 2), ep(e, 2)), []*destinationpb.Update{snapshot("demo/web", nil, pbEp(d, 2), pbEp(e, 2))}},
		{"opaque ports changed is a snapshot", set([]uint16{3306}, ep(d, 2), ep(e, 2)), []*destinationpb.Update{snapshot("demo/web", []uint32{3306}, pbEp(d, 2), pbEp(e, 2))}},
		{"all endpoints gone is an empty snapshot", set([]uint16{3306}), []*destinationpb.Update{snapshot("demo/web", []uint32{3306})}},
		{"gone destination", model.EndpointSet{}, []*destinationpb.Update{{Kind: &destinationpb.Update_DoesNotExist{DoesNotExist: &destinationpb.DoesNotExist{}}}}},
		{"still gone sends nothing", model.EndpointSet{}, nil},
		{"back again is a snapshot", set(nil, ep(a, 1)), []*destinationpb.Update{snapshot("demo/web", nil, pbEp(a, 1))}},
	}

	w := modeltest.NewWatcher()
	w.Set(dst, steps[0].set)
	client := dial(t, startServer(t, w, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := client.Get(ctx, &destinationpb.GetDestination{Path: dst})
	if err != nil {
		t.Fatal(err)
	}
	for i, step := range steps {
		if i > 0 {
			w.Set(dst, step.set)
		}
		for _, want := range step.want {
			got, err := stream.Recv()
			if err != nil {
				t.Fatalf("step %q: %v", step.name, err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("step %q:\n got %v\nwant %v", step.name, got, want)
			}
		}
	}
}

func TestGetRejectsInvalidPath(t *testing.T) {
	client := dial(t, startServer(t, modeltest.NewWatcher(), nil))
	for _, path := range []string{"", "web", "web:", ":8080", "web:http", "web:0", "web:65536", "10.0.0.1", "::1:80"} {
		t.Run(path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			stream, err := client.Get(ctx, &destinationpb.GetDestination{Path: path})
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Get(%q): got %v, want InvalidArgument", path, err)
			}
		})
	}
}

func TestValidatePathAcceptsAuthoritiesAndAddresses(t *testing.T) {
	for _, path := range []string{"web.demo.svc.cluster.local:8080", "web:80", "10.0.0.1:8080", "[fd00::1]:443"} {
		if err := validatePath(path); err != nil {
			t.Errorf("validatePath(%q) = %v, want nil", path, err)
		}
	}
}

// bigSet is a destination whose every endpoint changes with version, so
// each version is a full snapshot of some tens of kilobytes.
func bigSet(version uint32) model.EndpointSet {
	eps := make([]model.Endpoint, 300)
	for i := range eps {
		eps[i] = model.Endpoint{
			Addr:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i / 256), byte(i)}), 8080),
			Weight: version,
			Labels: map[string]string{"namespace": "demo", "workload": "web", "pod": fmt.Sprintf("web-%d-abcdefghij", i)},
		}
	}
	return model.EndpointSet{Exists: true, Service: "demo/web", Endpoints: eps}
}

func TestSlowClientDoesNotBlockModel(t *testing.T) {
	const dst = "web:8080"
	w := modeltest.NewWatcher()
	w.Set(dst, bigSet(1))
	client := dial(t, startServer(t, w, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := client.Get(ctx, &destinationpb.GetDestination{Path: dst})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}

	// The client reads nothing while the model changes far more than
	// gRPC's flow-control windows hold; the model must not wait for it.
	const last = 1000
	burstDone := make(chan struct{})
	go func() {
		defer close(burstDone)
		for v := uint32(2); v <= last; v++ {
			w.Set(dst, bigSet(v))
		}
	}()
	select {
	case <-burstDone:
	case <-time.After(20 * time.Second):
		t.Fatal("the model's updates blocked behind a client that does not read")
	}

	// Once the client reads again, it catches up with the newest state.
	for {
		u, err := stream.Recv()
		if err != nil {
			t.Fatalf("reading after the burst: %v", err)
		}
		if eps := u.GetSnapshot().GetEndpoints(); len(eps) > 0 && eps[0].GetWeight() == last {
			return
		}
	}
}

func TestStreamEndsWhenClientCancels(t *testing.T) {
	reg := prometheus.NewRegistry()
	w := modeltest.NewWatcher()
	srv, err := NewServer(w, slog.New(slog.DiscardHandler), reg, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	client := dial(t, lis.Addr().String())

	ctx, cancel := context.WithCancel(context.Background())
	stream, err := client.Get(ctx, &destinationpb.GetDestination{Path: "web:8080"})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := stream.Recv(); err != nil || u.GetDoesNotExist() == nil {
		t.Fatalf("first update: %v, %v; want does_not_exist", u, err)
	}
	if got := testutil.ToFloat64(srv.metrics.activeStreams); got != 1 {
		t.Fatalf("active streams = %v, want 1", got)
	}
	// The server counts an update once its Send has returned, which may be
	// after the client has read it: poll, do not time it.
	waitFor(t, func() (bool, string) {
		sent := testutil.ToFloat64(srv.metrics.updatesSent.WithLabelValues("does_not_exist"))
		return sent == 1, fmt.Sprintf("does_not_exist updates sent = %v, want 1", sent)
	})
	cancel()

	// The server notices the cancel asynchronously, too.
	waitFor(t, func() (bool, string) {
		watches, streams := w.ActiveWatches(), testutil.ToFloat64(srv.metrics.activeStreams)
		return watches == 0 && streams == 0,
			fmt.Sprintf("after cancel: %d model watches, %v active streams; want 0 and 0", watches, streams)
	})
}

// waitFor polls cond for up to 10 s and fails the test with its last
// report if it never holds.
func waitFor(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, report := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(report)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// One client holds at most MaxStreamsPerPeer streams, however many
// connections it spreads them over; a closed stream frees its place.
func TestStreamsPerPeerAreCapped(t *testing.T) {
	w := modeltest.NewWatcher()
	srv, addr := serve(t, w, nil, Limits{MaxStreamsPerPeer: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	open := func(client destinationpb.DestinationClient) (context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(ctx)
		stream, err := client.Get(ctx, &destinationpb.GetDestination{Path: "web:8080"})
		if err == nil {
			_, err = stream.Recv()
		}
		return cancel, err
	}
	var held []context.CancelFunc
	for i := range 3 {
		stop, err := open(dial(t, addr)) // a connection each
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		held = append(held, stop)
	}
	_, err := open(dial(t, addr))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted ||
		st.Message() != "too many open destination streams from this client: at most 3 per peer" {
		t.Fatalf("fourth stream: %v, want RESOURCE_EXHAUSTED naming the limit", err)
	}
	if got := testutil.ToFloat64(srv.metrics.streamsRefused); got != 1 {
		t.Errorf("streams refused = %v, want 1", got)
	}
	held[0]()
	client := dial(t, addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		stop, err := open(client)
		if err == nil {
			stop()
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("after closing one: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // the server sees the cancel asynchronously
	}
}

func BenchmarkSnapshotEncode5000(b *testing.B) {
	eps := make([]model.Endpoint, 5000)
	for i := range eps {
		eps[i] = model.Endpoint{
			Addr:     netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i / 256), byte(i)}), 8080),
			Weight:   1,
			Labels:   map[string]string{"namespace": "demo", "service": "web", "workload": "web", "pod": fmt.Sprintf("web-%d", i)},
			Identity: "spiffe://cluster.local/ns/demo/sa/web",
			Protocol: "h2",
		}
	}
	set := model.EndpointSet{Exists: true, Service: "demo/web", Endpoints: eps}
	b.ReportAllocs()
	for b.Loop() {
		data, err := proto.Marshal(between(false, model.EndpointSet{}, set)[0])
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
	}
}

// Streams that watch the same destination share each change's messages:
// the delta is computed once, not once per stream.
func TestStreamsShareTheChangesMessages(t *testing.T) {
	var c deltaCache
	first := model.EndpointSet{Exists: true, Service: "demo/web", Version: 1, Endpoints: []model.Endpoint{
		{Addr: netip.MustParseAddrPort("10.0.0.1:80")}, {Addr: netip.MustParseAddrPort("10.0.0.2:80")}, {Addr: netip.MustParseAddrPort("10.0.0.3:80")},
	}}
	second := first
	second.Version = 2
	second.Endpoints = append(first.Endpoints[:2:2], model.Endpoint{Addr: netip.MustParseAddrPort("10.0.0.4:80")}, first.Endpoints[2])
	var a, b sentState
	c.change("web:80", &a, first)
	c.change("web:80", &b, first)
	ua := c.change("web:80", &a, second).updates
	ub := c.change("web:80", &b, second).updates
	if len(ua) != 1 || ua[0].GetAdd() == nil || len(ua[0].GetAdd().GetEndpoints()) != 1 {
		t.Fatalf("updates %v, want one add of 10.0.0.4:80", ua)
	}
	if len(ub) != len(ua) || ub[0] != ua[0] {
		t.Errorf("the second stream got its own messages for the same change, want the first stream's shared")
	}
}

// Streams that get the same snapshot share one encoding of it: a big set
// is marshalled once for all the proxies watching it.
func TestStreamsShareOneEncodingOfASnapshot(t *testing.T) {
	const dst = "web.demo.svc.cluster.local:8080"
	w := modeltest.NewWatcher()
	set := bigSet(1)
	set.Version = 7
	w.Set(dst, set)
	srv, addr := serve(t, w, nil, Limits{})

	var first *destinationpb.Update
	for range 3 {
		stream, err := dial(t, addr).Get(t.Context(), &destinationpb.GetDestination{Path: dst})
		if err != nil {
			t.Fatal(err)
		}
		got, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(got.GetSnapshot().GetEndpoints()) != len(set.Endpoints) {
			t.Fatalf("snapshot of %d endpoints, want %d", len(got.GetSnapshot().GetEndpoints()), len(set.Endpoints))
		}
		if first == nil {
			first = got
		} else if !proto.Equal(got, first) {
			t.Fatal("streams got different snapshots of one set")
		}
	}
	srv.deltas.mu.Lock()
	defer srv.deltas.mu.Unlock()
	d := srv.deltas.entries[deltaKey{path: dst, to: 7}]
	if d == nil || len(srv.deltas.entries) != 1 {
		t.Fatalf("cache holds %d changes, want the one snapshot", len(srv.deltas.entries))
	}
	if len(d.encoded) != 1 {
		t.Errorf("the snapshot was not encoded for sharing (%d encoded messages)", len(d.encoded))
	}
}

// The walk over two sorted sets finds what the maps find, for sets made of
// random additions, removals and changes (and an invalid address or two).
func TestDiffSortedAgreesWithMaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randomSet := func() []model.Endpoint {
		var eps []model.Endpoint
		for i := range 40 {
			if rng.IntN(3) == 0 {
				continue
			}
			eps = append(eps, model.Endpoint{
				Addr:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 8080),
				Weight: uint32(rng.IntN(2)),
			})
		}
		if rng.IntN(4) == 0 {
			eps = append([]model.Endpoint{{}}, eps...) // no address: sorts first
		}
		return eps
	}
	canonical := func(added []*destinationpb.Endpoint, removed []string, size int) string {
		var names []string
		for _, ep := range added {
			names = append(names, fmt.Sprintf("%s/%d", ep.Address, ep.Weight))
		}
		slices.Sort(names)
		removed = slices.Clone(removed)
		slices.Sort(removed)
		return fmt.Sprint(names, removed, size)
	}
	for range 500 {
		prev, next := randomSet(), randomSet()
		if !sortedByAddr(prev) || !sortedByAddr(next) {
			continue // two invalid addresses: not strictly sorted, the maps take it
		}
		got, want := canonical(diffSorted(prev, next)), canonical(diffUnsorted(prev, next))
		if got != want {
			t.Fatalf("sorted walk %s, maps %s\nprev %v\nnext %v", got, want, prev, next)
		}
	}
}

// BenchmarkDelta5000 is one endpoint added to a 5,000-endpoint set, as the
// control-plane benchmark's changes are.
func BenchmarkDelta5000(b *testing.B) {
	prev := make([]model.Endpoint, 5000)
	for i := range prev {
		prev[i] = model.Endpoint{
			Addr:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i / 256), byte(i)}), 8080),
			Weight: 1, Labels: map[string]string{"namespace": "demo", "workload": "web", "pod": fmt.Sprintf("web-%d", i)},
		}
	}
	next := append(slices.Clone(prev), model.Endpoint{Addr: netip.MustParseAddrPort("10.2.0.0:8080"), Weight: 1})
	from := model.EndpointSet{Exists: true, Service: "demo/web", Endpoints: prev}
	to := model.EndpointSet{Exists: true, Service: "demo/web", Endpoints: next}
	b.Run("between", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if u := between(true, from, to); len(u) != 1 || u[0].GetAdd() == nil {
				b.Fatalf("updates %v", u)
			}
		}
	})
	b.Run("maps", func(b *testing.B) { // what between did before the sorted walk
		b.ReportAllocs()
		for b.Loop() {
			if added, _, _ := diffUnsorted(prev, next); len(added) != 1 {
				b.Fatalf("added %v", added)
			}
		}
	})
}
