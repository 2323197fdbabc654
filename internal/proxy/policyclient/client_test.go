package policyclient

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skeinmesh/skein/internal/controller/policy"
	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/proxy/destclient"
	"github.com/skeinmesh/skein/internal/routes"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const webDst = "web.demo.svc.cluster.local:8080"

// controller is a policy server over a real model on a loopback socket,
// which a test can stop and start again on the same address.
type controller struct {
	t     *testing.T
	model *model.Model
	addr  string
	stop  func()
}

func newController(t *testing.T) *controller {
	c := &controller{t: t, model: model.New()}
	w := c.model.Writer("test")
	for _, name := range []string{"web", "web-v1", "web-v2"} {
		w.SetService(model.Service{Namespace: "demo", Name: name, Ports: []model.ServicePort{{Port: 8080}},
			ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.1")}})
	}
	c.start("127.0.0.1:0")
	t.Cleanup(func() { c.stop() })
	return c
}

func (c *controller) start(addr string) {
	c.t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.addr = lis.Addr().String()
	srv, err := policy.NewServer(slog.New(slog.DiscardHandler), nil, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv.Start(ctx, c.model)
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	c.stop = func() { g.Stop(); cancel() }
}

// split sets the demo/split HTTPRoute on web:8080 with the given weights.
func (c *controller) split(v1, v2 int32) {
	c.model.Writer("test").SetHTTPRoute(&gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "split"},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{
				Group: ptr(gatewayv1.Group("")), Kind: ptr(gatewayv1.Kind("Service")), Name: "web"}}},
			Rules: []gatewayv1.HTTPRouteRule{{BackendRefs: []gatewayv1.HTTPBackendRef{
				{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web-v1", Port: ptr(gatewayv1.PortNumber(8080))}, Weight: &v1}},
				{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "web-v2", Port: ptr(gatewayv1.PortNumber(8080))}, Weight: &v2}},
			}}},
		},
	})
}

func ptr[T any](v T) *T { return &v }

func newClient(t *testing.T, addr string, opts Options) *Client {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(destclient.ConnectParams()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.WaitFirst == 0 {
		opts.WaitFirst = 5 * time.Second // generous: the tests do not measure it
	}
	return New(ctx, conn, opts)
}

// weightOfV1 is the weight of web-v1 in p's first rule, or -1.
func weightOfV1(p *routes.Policy) int {
	if p == nil || len(p.Routes) == 0 {
		return -1
	}
	return int(p.Routes[0].Rules[0].Backends[0].Weight)
}

// eventually polls lookups of dst until ok says yes; the deadline only
// keeps a broken test from hanging.
func eventually(t *testing.T, c *Client, dst string, what string, ok func(*routes.Policy) bool) *routes.Policy {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := c.Policy(context.Background(), dst)
		if err == nil && ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: last policy %+v, err %v", what, p, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFirstAnswerThenChangesFromTheModel(t *testing.T) {
	ctl := newController(t)
	ctl.split(90, 10)
	c := newClient(t, ctl.addr, Options{})
	p, err := c.Policy(context.Background(), webDst)
	if err != nil || weightOfV1(p) != 90 || p.Service != "demo/web" {
		t.Fatalf("first lookup: %+v, %v; want the 90/10 split", p, err)
	}
	ctl.split(50, 50)
	eventually(t, c, webDst, "the new split", func(p *routes.Policy) bool { return weightOfV1(p) == 50 })
}

func TestReceivedSeesEachPolicyBeforeLookupsDo(t *testing.T) {
	ctl := newController(t)
	ctl.split(90, 10)
	var mu sync.Mutex
	var seen []int
	c := newClient(t, ctl.addr, Options{Received: func(p *routes.Policy) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, weightOfV1(p))
	}})
	if _, err := c.Policy(context.Background(), webDst); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	first := slices.Clone(seen)
	mu.Unlock()
	if !slices.Equal(first, []int{90}) {
		t.Fatalf("Received saw %v by the first lookup's answer, want [90]", first)
	}
	ctl.split(50, 50)
	eventually(t, c, webDst, "the new split", func(p *routes.Policy) bool { return weightOfV1(p) == 50 })
	mu.Lock()
	defer mu.Unlock()
	if seen[len(seen)-1] != 50 {
		t.Errorf("Received saw %v, want the 50/50 split last", seen)
	}
}

func TestUnknownDestinationHasNoPolicy(t *testing.T) {
	ctl := newController(t)
	c := newClient(t, ctl.addr, Options{})
	if p, err := c.Policy(context.Background(), "nope.demo.svc.cluster.local:80"); p != nil || err != nil {
		t.Errorf("unknown destination: %+v, %v; want nil, nil", p, err)
	}
}

// TestKeepsLastPolicyWhileControllerIsAway: the controller stops; the
// proxy keeps answering with the last policy; the controller comes back
// (with a changed route) and the client picks the change up.
func TestKeepsLastPolicyWhileControllerIsAway(t *testing.T) {
	ctl := newController(t)
	ctl.split(90, 10)
	c := newClient(t, ctl.addr, Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	ended := make(chan struct{}, 16)
	c.streamEnded = func(string, error) {
		select {
		case ended <- struct{}{}:
		default:
		}
	}
	if p, err := c.Policy(context.Background(), webDst); err != nil || weightOfV1(p) != 90 {
		t.Fatalf("first lookup: %+v, %v", p, err)
	}

	ctl.stop()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end when the controller stopped")
	}
	for range 3 {
		if p, err := c.Policy(context.Background(), webDst); err != nil || weightOfV1(p) != 90 {
			t.Fatalf("controller away: %+v, %v; want the last policy", p, err)
		}
	}

	ctl.split(10, 90)
	ctl.start(ctl.addr)
	eventually(t, c, webDst, "the change after the controller came back", func(p *routes.Policy) bool { return weightOfV1(p) == 10 })
}

func TestControllerUnreachableFromTheStart(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nobody listens there
	c := newClient(t, addr, Options{WaitFirst: 50 * time.Millisecond})
	p, err := c.Policy(context.Background(), webDst)
	if p != nil || !errors.Is(err, ErrNotAnswered) {
		t.Errorf("no controller: %+v, %v; want ErrNotAnswered", p, err)
	}
}

func TestWatchedDestinationsAreBounded(t *testing.T) {
	ctl := newController(t)
	c := newClient(t, ctl.addr, Options{MaxDestinations: 2})
	for _, dst := range []string{webDst, "web-v1.demo.svc.cluster.local:8080", "web-v2.demo.svc.cluster.local:8080", webDst} {
		if _, err := c.Policy(context.Background(), dst); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Watched(); n != 2 {
		t.Errorf("watched %d destinations, want at most 2", n)
	}
	// The most recent ones stay: a lookup of one answers from memory.
	c.mu.Lock()
	_, kept := c.byDst[webDst]
	_, dropped := c.byDst["web-v1.demo.svc.cluster.local:8080"]
	c.mu.Unlock()
	if !kept || dropped {
		t.Errorf("LRU kept %v (want true) and the oldest %v (want false)", kept, dropped)
	}
}
