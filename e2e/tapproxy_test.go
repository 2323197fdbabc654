package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/netns"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

// issue 15: "a client without the controller's identity cannot open a
// proxy's tap API". A real skein-proxy serves tap on its admin port, from
// the network: a client holding the controller's identity sees a meshed
// client's requests with both identities proved and the Authorization
// header redacted; a workload's certificate and no certificate are
// refused, and the proxy logs it.
func TestProxyTapServesOnlyTheControllersIdentity(t *testing.T) {
	cp := getControlPlane(t)
	server := cp.servers[0]
	admin := fmt.Sprintf("%s:4191", server.IP)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	controllerCert := identitytest.IssueLeaf(t, cp.identityDir, spiffeid.RequireFromString(controllerID), identitytest.NewKey(t))
	stream, err := observeTap(t, ctx, cp.plain, admin, &controllerCert,
		&tappb.ObserveRequest{Filter: &tappb.Filter{Direction: "inbound", PathPrefix: "/echo"}})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan *tappb.Event, 100)
	go func() {
		defer close(events)
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			events <- ev
		}
	}()
	// The session opens when the stream reaches the proxy: call until an
	// event comes, each time first a path the filter excludes.
	client := httpClient(cp.client)
	url := fmt.Sprintf("http://%s:%d", server.IP, cpPortHTTP)
	var got *tappb.Event
	for got == nil {
		for _, path := range []string{"/id", "/echo?tap"} {
			req, _ := http.NewRequest("GET", url+path, nil)
			req.Header.Set("Authorization", "Bearer tap-e2e-secret")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("GET %s from the meshed client: %v", path, err)
			}
			resp.Body.Close()
		}
		select {
		case got = <-events:
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no tap event in a minute")
		}
	}
	rq := got.GetRequest()
	if rq == nil || rq.Path != "/echo?tap" || rq.Method != "GET" || got.Direction != "inbound" {
		t.Fatalf("first event %v, want the request to /echo", got)
	}
	if got.Source.Identity != clientID || got.Destination.Identity != echoID ||
		!strings.HasPrefix(got.Source.Address, cp.client.IP.String()+":") {
		t.Errorf("peers %v -> %v, want %s (%s) -> %s", got.Source, got.Destination, clientID, cp.client.IP, echoID)
	}
	for _, h := range rq.Headers {
		if strings.Contains(h.Value, "tap-e2e-secret") {
			t.Errorf("header %s shows its value", h.Name)
		}
	}
	if rs := (<-events).GetResponse(); rs.GetStatus() != 200 {
		t.Errorf("response event %v", rs)
	}

	for name, cert := range map[string]*tls.Certificate{
		"a workload's certificate": ptrTo(identitytest.IssueLeaf(t, cp.identityDir, spiffeid.RequireFromString(clientID), identitytest.NewKey(t))),
		"no certificate":           nil,
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			stream, err := observeTap(t, ctx, cp.plain, admin, cert, &tappb.ObserveRequest{})
			if err == nil {
				var ev *tappb.Event
				if ev, err = stream.Recv(); err == nil {
					t.Fatalf("a client with %s got an event: %v", name, ev)
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("not refused within 20 s: %v", err)
			}
			t.Logf("refused: %v", err)
		})
	}
	waitLogLine(t, cp.proxies[server.Name], "tap refused", "")
}

// observeTap opens a tap on the proxy admin port at addr, dialling from h,
// presenting cert (none when nil).
func observeTap(t *testing.T, ctx context.Context, h *netns.Host, addr string, cert *tls.Certificate, req *tappb.ObserveRequest) (grpc.ServerStreamingClient[tappb.Event], error) {
	t.Helper()
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"},
		InsecureSkipVerify: true, // this test is about the proxy's checks of its client
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return h.DialContext(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tappb.NewTapClient(conn).Observe(ctx, req)
}

func ptrTo[T any](v T) *T { return &v }
