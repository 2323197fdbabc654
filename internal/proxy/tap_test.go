package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skeinmesh/skein/internal/admin"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/outbound"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/proxy/tap"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

// tapFixture is an outbound proxy with the tap layer, and its admin port
// serving tap over mTLS with a certificate the identity service issued,
// as Run assembles them.
type tapFixture struct {
	ctrl      *identitytest.Controller
	adminAddr string
	logs      *identitytest.Logs
	send      func(path string, header stack.Header) int
	// post sends body over HTTP/2 and returns the body of the answer.
	post   func(path string, body []byte) []byte
	appGot chan []byte // the bodies the application received
}

func newTapFixture(t *testing.T) *tapFixture {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ctrl := identitytest.Start(t, identitytest.Options{})
	proxyID := ctrl.WorkloadID("demo", "vote-bot")
	local := ctrl.RunLocal(t, proxyID)
	logs := &identitytest.Logs{}
	appGot := make(chan []byte, 10)
	log := slog.New(slog.NewTextHandler(logs, nil))

	// The application echoes a body it is sent, and keeps it.
	backend := serveEngines(t, stack.HandlerFunc(func(_ context.Context, req *stack.Request) (*stack.Response, error) {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		if len(body) == 0 {
			return &stack.Response{Status: 204, Body: stack.NoBody}, nil
		}
		appGot <- body
		return &stack.Response{Status: 200, Header: stack.Header{{Name: "content-type", Value: "application/json"}},
			Body: stack.BytesBody(body, nil)}, nil
	}))
	const name = "web.demo.svc.cluster.local:8080"
	out := outbound.New(ctx, staticResolver{name: {{Addr: backend, Labels: map[string]string{"namespace": "demo", "workload": "web"}}}},
		balance.DefaultOptions(), nil, quietLog())
	reg, _ := metrics.New(nil)
	taps := tap.New(tap.Config{Identity: proxyID.String(), Labels: map[string]string{"namespace": "demo", "workload": "vote-bot"}})
	proxy := serveEngines(t, outboundStack(out, stackConfig{metrics: reg, tunnelIdleTimeout: time.Hour, engines: testEngines(), log: quietLog(), tap: taps}))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{identity: local}
	pcfg := Config{Identity: proxyID.String()}
	served := make(chan error, 1)
	go func() {
		served <- serveAdminPort(ctx, ln, admin.Config{Ready: func() error { return nil }, Log: quietLog()}, cp.tapService(pcfg, taps, log), log)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("admin port: %v", err)
		}
	})

	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", proxy.String())
	}
	h2 := testEngines().For(2)(dial)
	t.Cleanup(h2.Close)
	post := func(path string, body []byte) []byte {
		resp, err := h2.Serve(ctx, &stack.Request{Method: "POST", Scheme: "http", Authority: name, Path: path, ProtoMajor: 2,
			Body: stack.BytesBody(body, nil)})
		if err != nil {
			t.Fatalf("request through the proxy: %v", err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("answer through the proxy: %v", err)
		}
		return got
	}
	return &tapFixture{ctrl: ctrl, adminAddr: ln.Addr().String(), logs: logs, post: post, appGot: appGot, send: func(path string, header stack.Header) int {
		c := testEngines().For(1)(dial)
		defer c.Close()
		resp, err := c.Serve(ctx, &stack.Request{Method: "GET", Scheme: "http", Authority: name, Path: path, ProtoMajor: 1,
			Header: header, Body: stack.NoBody})
		if err != nil {
			t.Errorf("request through the proxy: %v", err)
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Status
	}}
}

// observe opens a tap on the proxy's admin port as a client with cert
// (none when nil) that trusts the mesh's anchor.
func (f *tapFixture) observe(t *testing.T, ctx context.Context, cert *tls.Certificate, req *tappb.ObserveRequest) (grpc.ServerStreamingClient[tappb.Event], error) {
	t.Helper()
	anchors := x509.NewCertPool()
	anchors.AddCert(f.ctrl.Anchor)
	tlsCfg := &tls.Config{
		MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"},
		// The proxy's certificate names a SPIFFE ID, not a host: check its
		// chain by hand.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			return err
		},
	}
	if cert != nil {
		tlsCfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(f.adminAddr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tappb.NewTapClient(conn).Observe(ctx, req)
}

// issue 15: "a client without the controller's identity cannot open a
// proxy's tap API"; the controller's identity gets the events of the
// requests its filter matches, with credentials redacted, on the same port
// as the plaintext admin endpoints.
func TestTapServesTheControllerOnlyOverTheAdminPort(t *testing.T) {
	f := newTapFixture(t)
	td := f.ctrl.TrustDomain
	controllerCert := identitytest.IssueLeaf(t, f.ctrl.Dir, meshid.Controller(td), identitytest.NewKey(t))

	// Plaintext admin HTTP still answers on the port.
	resp, err := http.Get("http://" + f.adminAddr + "/live")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /live on the admin port: %v %v", resp, err)
	}
	resp.Body.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := f.observe(t, ctx, &controllerCert, &tappb.ObserveRequest{Filter: &tappb.Filter{PathPrefix: "/api/vote"}})
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
	// The session opens when the stream reaches the proxy: send until an
	// event arrives, a request the filter excludes before each match.
	var first *tappb.Event
	for first == nil {
		if f.send("/other", nil) != 204 || f.send("/api/vote", stack.Header{{Name: "authorization", Value: "Bearer s3cret"}}) != 204 {
			t.Fatal("the proxy did not answer 204")
		}
		select {
		case first = <-events:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no tap event in 30 s")
		}
	}
	got := []*tappb.Event{first}
	for len(got) < 3 {
		select {
		case ev := <-events:
			got = append(got, ev)
		case <-ctx.Done():
			t.Fatalf("events %v", got)
		}
	}
	rq := got[0].GetRequest()
	if rq == nil || rq.Path != "/api/vote" || rq.Method != "GET" || got[1].GetResponse().GetStatus() != 204 || got[2].GetEnd() == nil {
		t.Fatalf("events %v", got)
	}
	for _, h := range rq.Headers {
		if strings.Contains(h.Value, "s3cret") {
			t.Errorf("header %s shows its value", h.Name)
		}
	}
	if got[0].Source.Labels["workload"] != "vote-bot" || got[0].Destination.Labels["workload"] != "web" {
		t.Errorf("peers %v -> %v", got[0].Source, got[0].Destination)
	}

	// Anyone else is refused: a workload's identity, the controller's
	// identity from another CA, no certificate at all.
	foreign := newTestCA(t).issue(t, meshid.Controller(td).String())
	for name, cert := range map[string]*tls.Certificate{
		"workload identity":                   ptr(identitytest.IssueLeaf(t, f.ctrl.Dir, f.ctrl.WorkloadID("demo", "web"), identitytest.NewKey(t))),
		"controller identity from another CA": &foreign,
		"no certificate":                      nil,
		"another control-plane identity":      ptr(identitytest.IssueLeaf(t, f.ctrl.Dir, spiffeid.RequireFromPath(td, "/skein/injector"), identitytest.NewKey(t))),
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			stream, err := f.observe(t, ctx, cert, &tappb.ObserveRequest{})
			if err == nil {
				f.send("/api/vote", nil)
				var ev *tappb.Event
				ev, err = stream.Recv()
				if err == nil {
					t.Fatalf("a client with %s got an event: %v", name, ev)
				}
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				t.Fatalf("no refusal in 10 s: %v", err)
			}
			t.Logf("refused: %v", err)
		})
	}
	if !f.logs.Contains("tap refused") {
		t.Error("no refusal was logged")
	}
}

// Bodies through real engines: the application and the client get the
// bytes they were sent, the tap a redacted prefix of each.
func TestTapBodyPrefixThroughTheProxyIsRedactedAndTheBodyUntouched(t *testing.T) {
	f := newTapFixture(t)
	controllerCert := identitytest.IssueLeaf(t, f.ctrl.Dir, meshid.Controller(f.ctrl.TrustDomain), identitytest.NewKey(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := f.observe(t, ctx, &controllerCert, &tappb.ObserveRequest{Filter: &tappb.Filter{Method: "POST"},
		BodyBytes: 64, RedactJsonFields: []string{"password"}})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"user":"ann","password":"hunter2","votes":[1,2,3],"pad":"` + strings.Repeat("z", 100_000) + `"}`)
	events := make(chan *tappb.Event, 100)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				close(events)
				return
			}
			events <- ev
		}
	}()
	for {
		if got := f.post("/api/vote", body); !bytes.Equal(got, body) {
			t.Fatalf("the client got %d bytes, not the %d it sent echoed", len(got), len(body))
		}
		if got := <-f.appGot; !bytes.Equal(got, body) {
			t.Fatalf("the application got %d bytes, not the %d sent", len(got), len(body))
		}
		select {
		case ev := <-events:
			rq := ev.GetRequest()
			want := strings.Replace(string(body[:64]), `"hunter2"`, `"[REDACTED]"`, 1)
			if string(rq.GetBodyPrefix()) != want || !rq.GetBodyTruncated() {
				t.Errorf("request body prefix %q (truncated %t), want %q", rq.GetBodyPrefix(), rq.GetBodyTruncated(), want)
			}
			<-events // response
			end := (<-events).GetEnd()
			if string(end.GetResponseBodyPrefix()) != want ||
				end.GetRequestBytes() != uint64(len(body)) || end.GetResponseBytes() != uint64(len(body)) {
				t.Errorf("end %v", end)
			}
			return
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no tap event in 30 s")
		}
	}
}

func ptr[T any](v T) *T { return &v }
