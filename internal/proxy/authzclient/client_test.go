package authzclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/controller/inbound"
	"github.com/skeinmesh/skein/internal/controller/policy"
	"github.com/skeinmesh/skein/internal/model"
)

func selfSigned(t *testing.T, id string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// controller runs the real Policy service (with inbound policy) over m on
// a loopback TLS socket; stop ends it.
func controller(t *testing.T, m *model.Model) (addr string, stop func()) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pol, err := policy.NewServer(slog.New(slog.DiscardHandler), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	inb, err := inbound.NewServer(inbound.Config{}, slog.New(slog.DiscardHandler), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	inb.Start(ctx, m)
	pol.SetInbound(inb)
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{selfSigned(t, "spiffe://cluster.local/ns/skein/sa/skein-controller")}, ClientAuth: tls.RequireAnyClientCert})))
	pol.Register(g)
	go g.Serve(lis)
	stop = func() { g.Stop(); cancel() }
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{selfSigned(t, "spiffe://cluster.local/ns/demo/sa/web")}, InsecureSkipVerify: true})
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func webModel() (*model.Model, *model.Writer) {
	m := model.New()
	w := m.Writer("test")
	w.SetInstance(model.Instance{Namespace: "demo", Name: "web-0", Labels: map[string]string{"app": "web"}, ServiceAccount: "web", Meshed: true})
	return m, w
}

func newClient(t *testing.T, conn *grpc.ClientConn, pod string, known ...uint16) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := New(ctx, conn, Options{Namespace: "demo", Pod: pod, Log: slog.New(slog.DiscardHandler), Ports: known,
		WaitFirst: 300 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFailsClosedWithoutAnAnswer: a proxy whose controller never answered
// gets an error (the layer denies), and one whose instance the controller
// does not know gets another.
func TestFailsClosedWithoutAnAnswer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nobody answers
	if p, err := newClient(t, dial(t, addr), "web-0").Inbound(t.Context(), 8080); p != nil || !errors.Is(err, ErrNotAnswered) {
		t.Fatalf("Inbound without a controller = %v, %v; want ErrNotAnswered", p, err)
	}
	m, _ := webModel()
	addr, _ = controller(t, m)
	if p, err := newClient(t, dial(t, addr), "web-9").Inbound(t.Context(), 8080); p != nil || !errors.Is(err, ErrUnknownInstance) {
		t.Fatalf("Inbound of an unknown instance = %v, %v; want ErrUnknownInstance", p, err)
	}
}

// TestFollowsChangesAndKeepsTheLastPolicy: the first answer arrives, Watch
// is called on a change, and the last policy stays once the controller is
// gone.
func TestFollowsChangesAndKeepsTheLastPolicy(t *testing.T) {
	m, w := webModel()
	addr, stop := controller(t, m)
	c := newClient(t, dial(t, addr), "web-0")
	p, err := c.Inbound(t.Context(), 8080)
	if err != nil || p.Default != authz.AllUnauthenticated || p.Server != "" {
		t.Fatalf("first policy = %+v, %v", p, err)
	}
	changed := make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go c.Watch(ctx, func() { changed <- struct{}{} })
	for registered := false; !registered; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		registered = len(c.watchers) == 1
		c.mu.Unlock()
	}
	w.SetServer(&policyv1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-http"}, Spec: policyv1.ServerSpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Port: intstr.FromInt32(8080)}})
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch was not called after the Server appeared")
	}
	if p, err := c.Inbound(t.Context(), 8080); err != nil || p.Server != "demo/web-http" || p.Default != authz.Deny {
		t.Fatalf("after the Server: %+v, %v", p, err)
	}
	stop()
	time.Sleep(100 * time.Millisecond) // the stream breaks and is retried against nothing
	if p, err := c.Inbound(t.Context(), 8080); err != nil || p.Server != "demo/web-http" {
		t.Fatalf("with the controller gone: %+v, %v; want the last policy", p, err)
	}
}

// TestKnownPortsAreWatchedFromTheStart: a port given in Options.Ports has
// its policy before any request looked it up, so a controller that goes
// away before the first request does not leave it denied; a port not
// given is still unknown then.
func TestKnownPortsAreWatchedFromTheStart(t *testing.T) {
	m, _ := webModel()
	addr, stop := controller(t, m)
	c := newClient(t, dial(t, addr), "web-0", 8080, 8081)
	if n := c.Watched(); n != 2 {
		t.Fatalf("watching %d ports before any request, want 2", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !c.Answered(8080) || !c.Answered(8081) {
		if time.Now().After(deadline) {
			t.Fatal("the known ports' policies never arrived without a request")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	for _, port := range []uint16{8080, 8081} {
		if p, err := c.Inbound(t.Context(), port); err != nil || p.Default != authz.AllUnauthenticated {
			t.Errorf("known port %d with the controller gone = %+v, %v; want its policy", port, p, err)
		}
	}
	if p, err := c.Inbound(t.Context(), 9090); p != nil || !errors.Is(err, ErrNotAnswered) {
		t.Errorf("a port first looked up with the controller gone = %+v, %v; want ErrNotAnswered", p, err)
	}
}

// TestKnownPortsAreBounded: more known ports than MaxKnownPorts is an
// error, not a goroutine and a stream each.
func TestKnownPortsAreBounded(t *testing.T) {
	ports := make([]uint16, MaxKnownPorts+1)
	for i := range ports {
		ports[i] = uint16(1000 + i)
	}
	if _, err := New(t.Context(), dial(t, "127.0.0.1:1"), Options{Ports: ports}); err == nil {
		t.Fatalf("New with %d known ports succeeded, want an error", len(ports))
	}
}

// TestKnownPortsAreNeverDropped: past MaxPorts other ports are dropped,
// the known ones stay.
func TestKnownPortsAreNeverDropped(t *testing.T) {
	m, _ := webModel()
	addr, _ := controller(t, m)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c, err := New(ctx, dial(t, addr), Options{Namespace: "demo", Pod: "web-0", Log: slog.New(slog.DiscardHandler),
		Ports: []uint16{8080}, MaxPorts: 1, WaitFirst: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []uint16{9001, 9002, 8080} {
		if _, err := c.Inbound(ctx, port); err != nil {
			t.Fatalf("port %d: %v", port, err)
		}
	}
	if n := c.Watched(); n != 2 {
		t.Errorf("watching %d ports, want 2 (the known one and the last other one)", n)
	}
	if !c.Answered(8080) {
		t.Error("the known port was dropped")
	}
}
