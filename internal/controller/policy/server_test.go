package policy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/routes"
	"github.com/skeinmesh/skein/internal/routes/routespb"
	policypb "github.com/skeinmesh/skein/proto/policy"
)

// serve runs a policy Server over m on a loopback socket and returns its
// address.
func serve(t *testing.T, m *model.Model, maxStreams int) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(slog.New(slog.DiscardHandler), nil, maxStreams)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv.Start(ctx, m)
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(func() { g.Stop(); cancel() })
	return lis.Addr().String()
}

func dialPolicy(t *testing.T, addr string) policypb.PolicyClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return policypb.NewPolicyClient(conn)
}

// receiver reads a stream's policies into a channel.
func receiver(t *testing.T, client policypb.PolicyClient, target string) <-chan *routes.Policy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := client.WatchOutbound(ctx, &policypb.OutboundRequest{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *routes.Policy, 16)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				close(out)
				return
			}
			p, err := routespb.FromProto(m)
			if err != nil {
				t.Errorf("decoding: %v", err)
			}
			out <- p
		}
	}()
	return out
}

func nextPolicy(t *testing.T, ch <-chan *routes.Policy) *routes.Policy {
	t.Helper()
	select {
	case p, ok := <-ch:
		if !ok {
			t.Fatal("stream ended")
		}
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no policy received")
	}
	return nil
}

// noPolicy checks nothing more arrives. Model writes publish before they
// return and the hub sends at once, so a short wait suffices to catch a
// spurious send.
func noPolicy(t *testing.T, ch <-chan *routes.Policy) {
	t.Helper()
	select {
	case p := <-ch:
		t.Fatalf("unexpected policy %+v", p)
	case <-time.After(100 * time.Millisecond):
	}
}

func splitRoute(t *testing.T, v1, v2 int) string {
	return fmt.Sprintf(`
metadata: {name: split}
spec:`+parentWeb+`
  rules:
  - backendRefs: [{name: web-v1, port: 8080, weight: %d}, {name: web-v2, port: 8080, weight: %d}]
`, v1, v2)
}

// TestRouteChangeReachesTheStream: a real model, a real gRPC server and
// client: every change of the destination's route or Service annotations
// reaches its stream as a full policy; changes to other destinations and
// to endpoints do not; an invalid route leaves the last good one serving.
func TestRouteChangeReachesTheStream(t *testing.T) {
	m := model.New()
	w := m.Writer("test")
	for _, name := range []string{"web", "web-v1", "web-v2", "other"} {
		s := svc(name, "", nil)
		if name == "web" {
			s.ClusterIPs = []netip.Addr{netip.MustParseAddr("10.96.0.10")}
		}
		w.SetService(*s)
	}
	client := dialPolicy(t, serve(t, m, 0))
	byName := receiver(t, client, webDst)
	byIP := receiver(t, client, "10.96.0.10:8080")
	for _, ch := range []<-chan *routes.Policy{byName, byIP} {
		if p := nextPolicy(t, ch); p == nil || len(p.Routes) != 0 || p.Service != "demo/web" {
			t.Fatalf("first policy = %+v, want demo/web without routes", p)
		}
	}

	w.SetHTTPRoute(httpRoute(t, splitRoute(t, 90, 10)))
	for _, ch := range []<-chan *routes.Policy{byName, byIP} {
		p := nextPolicy(t, ch)
		if got := backends(p.Routes[0].Rules[0]); len(got) != 2 || got[0] != "web-v1.demo.svc.cluster.local:8080=90" {
			t.Fatalf("after the route: %q", got)
		}
	}

	w.SetHTTPRoute(httpRoute(t, splitRoute(t, 50, 50)))
	if got := backends(nextPolicy(t, byName).Routes[0].Rules[0]); got[0] != "web-v1.demo.svc.cluster.local:8080=50" {
		t.Fatalf("after the weight change: %q", got)
	}
	nextPolicy(t, byIP)

	// Not this destination's business: nothing sent.
	other := svc("other", "", map[string]string{AnnTimeoutRequest: "1s"})
	w.SetService(*other)
	w.SetInstance(model.Instance{Namespace: "demo", Name: "web-0", IP: netip.MustParseAddr("10.0.0.1"), Ready: true})
	noPolicy(t, byName)

	// An invalid version keeps the last good one: nothing sent.
	w.SetHTTPRoute(httpRoute(t, splitRoute(t, 0, 0)))
	noPolicy(t, byName)

	// The Service's annotations reach the rules.
	web := svc("web", "10.96.0.10", map[string]string{AnnTimeoutRequest: "250ms"})
	w.SetService(*web)
	p := nextPolicy(t, byName)
	if p.Defaults.Timeouts.Request != 250*time.Millisecond || p.Routes[0].Rules[0].Timeouts.Request != 250*time.Millisecond {
		t.Errorf("after the annotation: defaults %+v, rule %+v", p.Defaults.Timeouts, p.Routes[0].Rules[0].Timeouts)
	}
	nextPolicy(t, byIP)

	w.DeleteHTTPRoute("demo", "split")
	if p := nextPolicy(t, byName); len(p.Routes) != 0 {
		t.Errorf("after the delete: %+v", p.Routes)
	}
	w.DeleteService("demo", "web")
	if p := nextPolicy(t, byName); p != nil {
		t.Errorf("after the Service is gone: %+v, want no policy", p)
	}
}

func TestUnknownTargetHasNoPolicy(t *testing.T) {
	client := dialPolicy(t, serve(t, model.New(), 0))
	if p := nextPolicy(t, receiver(t, client, "nope.demo.svc.cluster.local:80")); p != nil {
		t.Errorf("policy of an unknown target = %+v, want none", p)
	}
}

func TestWatchOutboundRejectsBadTargets(t *testing.T) {
	client := dialPolicy(t, serve(t, model.New(), 0))
	for _, target := range []string{"", "web", ":80", "web:0", "web:http"} {
		stream, err := client.WatchOutbound(context.Background(), &policypb.OutboundRequest{Target: target})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("target %q: %v, want INVALID_ARGUMENT", target, err)
		}
	}
}

func TestPolicyStreamsPerPeerAreCapped(t *testing.T) {
	client := dialPolicy(t, serve(t, model.New(), 2))
	for range 2 {
		nextPolicy(t, receiver(t, client, webDst))
	}
	stream, err := client.WatchOutbound(context.Background(), &policypb.OutboundRequest{Target: webDst})
	if err == nil {
		_, err = stream.Recv()
	}
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "too many open policy streams from this client: at most 2 per peer" {
		t.Errorf("third stream: %v, want RESOURCE_EXHAUSTED", err)
	}
}
