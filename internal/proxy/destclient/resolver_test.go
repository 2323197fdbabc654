package destclient

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skeinmesh/skein/internal/controller/destination"
	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/model/modeltest"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
)

// serveDestination serves a Destination server over w on lis until the
// returned server is stopped (at the latest when the test ends).
func serveDestination(t *testing.T, lis net.Listener, w model.Watcher) *grpc.Server {
	t.Helper()
	srv, err := destination.NewServer(w, slog.New(slog.DiscardHandler), nil, destination.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return g
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(ConnectParams()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// recorder keeps every set a watch reports.
type recorder struct {
	mu   sync.Mutex
	sets []discovery.EndpointSet
	seen chan struct{} // gets a token per update
}

func newRecorder() *recorder { return &recorder{seen: make(chan struct{}, 1)} }

func (r *recorder) update(set discovery.EndpointSet) {
	r.mu.Lock()
	r.sets = append(r.sets, set)
	r.mu.Unlock()
	select {
	case r.seen <- struct{}{}:
	default:
	}
}

func (r *recorder) all() []discovery.EndpointSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]discovery.EndpointSet(nil), r.sets...)
}

// waitFor waits until the latest reported set is want.
func (r *recorder) waitFor(t *testing.T, want discovery.EndpointSet) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		sets := r.all()
		if len(sets) > 0 && sameSet(sets[len(sets)-1], want) {
			return
		}
		select {
		case <-r.seen:
		case <-timeout:
			t.Fatalf("timed out waiting for %+v; reported so far: %+v", want, sets)
		}
	}
}

func modelEp(addr string, weight uint32) model.Endpoint {
	return model.Endpoint{
		Addr:     netip.MustParseAddrPort(addr),
		Weight:   weight,
		Labels:   map[string]string{"namespace": "demo", "pod": "web-" + addr},
		Identity: "spiffe://cluster.local/ns/demo/sa/web",
		Protocol: "h2",
	}
}

func modelSet(eps ...model.Endpoint) model.EndpointSet {
	return model.EndpointSet{Exists: true, Service: "demo/web", Endpoints: eps, OpaquePorts: []uint16{3306}}
}

// wantSet is what the resolver should report for modelSet(eps...).
func wantSet(eps ...model.Endpoint) discovery.EndpointSet {
	out := discovery.EndpointSet{Exists: true, Endpoints: []discovery.Endpoint{}, OpaquePorts: []uint16{3306}}
	for _, e := range eps {
		out.Endpoints = append(out.Endpoints, discovery.Endpoint{
			Addr: e.Addr, Weight: e.Weight, Labels: e.Labels, Identity: e.Identity, Protocol: discovery.Protocol(e.Protocol),
		})
	}
	return out
}

const (
	dst = "web.demo.svc.cluster.local:8080"
	a   = "10.0.0.1:8080"
	b   = "10.0.0.2:8080"
	c   = "10.0.0.3:8080"
	d   = "10.0.0.4:8080"
)

func TestResolverFollowsDestination(t *testing.T) {
	steps := []struct {
		name string
		set  model.EndpointSet
		want discovery.EndpointSet
	}{
		{"initial snapshot", modelSet(modelEp(a, 1), modelEp(b, 1)), wantSet(modelEp(a, 1), modelEp(b, 1))},
		{"added endpoint", modelSet(modelEp(a, 1), modelEp(b, 1), modelEp(c, 1)), wantSet(modelEp(a, 1), modelEp(b, 1), modelEp(c, 1))},
		{"removed endpoint", modelSet(modelEp(a, 1), modelEp(c, 1)), wantSet(modelEp(a, 1), modelEp(c, 1))},
		{"changed weight", modelSet(modelEp(a, 7), modelEp(c, 1)), wantSet(modelEp(a, 7), modelEp(c, 1))},
		{"added and removed", modelSet(modelEp(a, 7), modelEp(c, 1), modelEp(d, 1)), wantSet(modelEp(a, 7), modelEp(c, 1), modelEp(d, 1))},
		{"does not exist", model.EndpointSet{}, discovery.EndpointSet{Exists: false}},
		{"exists again", modelSet(modelEp(b, 1)), wantSet(modelEp(b, 1))},
		{"no endpoints", modelSet(), wantSet()},
	}
	w := modeltest.NewWatcher()
	w.Set(dst, steps[0].set)
	lis := listen(t, "127.0.0.1:0")
	serveDestination(t, lis, w)
	r := New(dial(t, lis.Addr().String()), Options{Log: slog.New(slog.DiscardHandler)})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	if err := r.Watch(ctx, dst, rec.update); err != nil {
		t.Fatal(err)
	}
	for i, step := range steps {
		if i > 0 {
			w.Set(dst, step.set)
		}
		t.Logf("step %q", step.name)
		rec.waitFor(t, step.want)
	}
}

func TestResolverKeepsStateWhileControllerIsDown(t *testing.T) {
	first := modeltest.NewWatcher()
	first.Set(dst, modelSet(modelEp(a, 1), modelEp(b, 1)))
	lis := listen(t, "127.0.0.1:0")
	addr := lis.Addr().String()
	server := serveDestination(t, lis, first)

	r := New(dial(t, addr), Options{Log: slog.New(slog.DiscardHandler)})
	streamEnded := make(chan struct{}, 1)
	r.streamEnded = func(string, error) {
		select {
		case streamEnded <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	if err := r.Watch(ctx, dst, rec.update); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, wantSet(modelEp(a, 1), modelEp(b, 1)))

	// The controller goes away; the resolver must notice and keep quiet.
	server.Stop()
	select {
	case <-streamEnded:
	case <-time.After(15 * time.Second):
		t.Fatal("the resolver did not notice the controller stopping")
	}

	// It comes back on the same address with endpoints added meanwhile.
	second := modeltest.NewWatcher()
	second.Set(dst, modelSet(modelEp(a, 1), modelEp(b, 1), modelEp(c, 1)))
	serveDestination(t, listen(t, addr), second)
	rec.waitFor(t, wantSet(modelEp(a, 1), modelEp(b, 1), modelEp(c, 1)))

	sets := rec.all()
	if len(sets) != 2 {
		t.Fatalf("reported %d sets, want 2 (before and after the outage): %+v", len(sets), sets)
	}
	for _, s := range sets {
		if !s.Exists || len(s.Endpoints) == 0 {
			t.Fatalf("reported %+v during the outage; want the last state kept", s)
		}
	}
}

func TestResolverWaitsForControllerAtStart(t *testing.T) {
	// Take a free port, then leave it closed: the controller is down.
	lis := listen(t, "127.0.0.1:0")
	addr := lis.Addr().String()
	lis.Close()

	r := New(dial(t, addr), Options{Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	if err := r.Watch(ctx, dst, rec.update); err != nil {
		t.Fatal(err)
	}

	w := modeltest.NewWatcher()
	w.Set(dst, modelSet(modelEp(a, 1)))
	serveDestination(t, listen(t, addr), w)
	rec.waitFor(t, wantSet(modelEp(a, 1)))
	if sets := rec.all(); len(sets) != 1 {
		t.Fatalf("reported %+v; want only the controller's first answer", sets)
	}
}

func TestResolverStopsStreamWhenContextEnds(t *testing.T) {
	w := modeltest.NewWatcher()
	w.Set(dst, modelSet(modelEp(a, 1)))
	lis := listen(t, "127.0.0.1:0")
	serveDestination(t, lis, w)
	r := New(dial(t, lis.Addr().String()), Options{Log: slog.New(slog.DiscardHandler)})

	ctx, cancel := context.WithCancel(context.Background())
	rec := newRecorder()
	if err := r.Watch(ctx, dst, rec.update); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, wantSet(modelEp(a, 1)))
	cancel()

	deadline := time.Now().Add(10 * time.Second)
	for w.ActiveWatches() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the controller still watches after the resolver's context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.Watch(ctx, dst, rec.update); err == nil {
		t.Fatal("Watch with a done context succeeded")
	}
}
