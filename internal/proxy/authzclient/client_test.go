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

func newClient(t *testing.T, conn *grpc.ClientConn, pod string) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return New(ctx, conn, Options{Namespace: "demo", Pod: pod, Log: slog.New(slog.DiscardHandler),
		WaitFirst: 300 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
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
