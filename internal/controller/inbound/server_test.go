package inbound

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	policyv1 "github.com/skeinmesh/skein/api/policy/v1alpha1"
	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/authz/authzpb"
	"github.com/skeinmesh/skein/internal/controller/policy"
	"github.com/skeinmesh/skein/internal/model"
	policypb "github.com/skeinmesh/skein/proto/policy"
)

// selfSigned is a certificate for a SPIFFE ID (the tests' TLS does not
// verify chains: what WatchInbound checks is the ID the handshake saw).
func selfSigned(t *testing.T, id string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Serve runs the Policy service with inbound policy over m on a loopback
// TLS socket that asks every client for a certificate, and returns its
// address.
func Serve(t *testing.T, m *model.Model, cfg Config) string {
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
	inb, err := NewServer(cfg, slog.New(slog.DiscardHandler), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	inb.Start(ctx, m)
	pol.SetInbound(inb)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{selfSigned(t, "spiffe://example.org/ns/skein/sa/skein-controller")}, ClientAuth: tls.RequireAnyClientCert})
	g := grpc.NewServer(grpc.Creds(creds))
	pol.Register(g)
	go g.Serve(lis)
	t.Cleanup(func() { g.Stop(); cancel() })
	return lis.Addr().String()
}

func dialAs(t *testing.T, addr, id string) policypb.PolicyClient {
	t.Helper()
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{selfSigned(t, id)}, InsecureSkipVerify: true})
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return policypb.NewPolicyClient(conn)
}

func newModel(t *testing.T) (*model.Model, *model.Writer) {
	m := model.New(model.WithTrustDomain(td))
	w := m.Writer("test")
	w.SetInstance(webInstance())
	return m, w
}

const webID = "spiffe://example.org/ns/demo/sa/web"

// TestWatchInboundFollowsChanges: the stream answers the port's policy at
// once and again when a Server appears.
func TestWatchInboundFollowsChanges(t *testing.T) {
	m, w := newModel(t)
	client := dialAs(t, Serve(t, m, Config{}), webID)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.WatchInbound(ctx, &policypb.InboundRequest{Namespace: "demo", Pod: "web-0", Port: 8080})
	if err != nil {
		t.Fatal(err)
	}
	recv := func() *authz.Inbound {
		t.Helper()
		msg, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		in, err := authzpb.FromProto(msg)
		if err != nil || in == nil {
			t.Fatalf("policy %v, %v", in, err)
		}
		return in
	}
	if in := recv(); in.Server != "" || in.Default != authz.AllUnauthenticated {
		t.Fatalf("first policy = %+v, want no Server and all-unauthenticated", in)
	}
	w.SetServer(&policyv1.Server{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-http"}, Spec: policyv1.ServerSpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Port: intstr.FromString("http")}})
	if in := recv(); in.Server != "demo/web-http" || in.Default != authz.Deny {
		t.Fatalf("after the Server = %+v, want demo/web-http and deny", in)
	}
}

// TestWatchInboundOnlyForItsOwnWorkload: a proxy of another namespace, or
// of the right namespace with another service account, is refused.
func TestWatchInboundOnlyForItsOwnWorkload(t *testing.T) {
	m, _ := newModel(t)
	addr := Serve(t, m, Config{})
	for _, id := range []string{"spiffe://example.org/ns/other/sa/web", "spiffe://example.org/ns/demo/sa/intruder"} {
		stream, err := dialAs(t, addr, id).WatchInbound(context.Background(), &policypb.InboundRequest{Namespace: "demo", Pod: "web-0", Port: 8080})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s asking for demo/web-0: %v, want PermissionDenied", id, err)
		}
	}
}

// TestWatchInboundFindsAWorkloadReplicaByWorkload: skein up numbers the
// Workload instances it publishes among the ready ones, so replica 2 may
// be published as "web-0"; its proxy, asking for web-2 of workload web,
// gets the Workload's policy. A pod (not a Workload instance) gets no such
// fallback: an unknown pod is unknown.
func TestWatchInboundFindsAWorkloadReplicaByWorkload(t *testing.T) {
	m := model.New(model.WithTrustDomain(td))
	w := m.Writer("test")
	vm := webInstance()
	vm.External = true
	w.SetInstance(vm)
	client := dialAs(t, Serve(t, m, Config{DefaultPolicy: authz.Deny}), webID)
	recv := func(pod string) *policypb.InboundPolicy {
		t.Helper()
		stream, err := client.WatchInbound(t.Context(), &policypb.InboundRequest{Namespace: "demo", Pod: pod, Workload: "web", Port: 8080})
		if err != nil {
			t.Fatal(err)
		}
		msg, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	if p := recv("web-2"); !p.GetExists() || p.GetDefaultPolicy() != "deny" {
		t.Fatalf("web-2 of Workload web = %v, want the Workload's policy", p)
	}
	w.SetInstance(webInstance()) // the same instance, now a pod
	// The change reaches the streams' compiler asynchronously: a stream
	// opened at once may first answer from the model before it, then
	// follow with the change. Under load that first answer was the
	// Workload's (20 runs of 20 while CI ran beside).
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stream, err := client.WatchInbound(ctx, &policypb.InboundRequest{Namespace: "demo", Pod: "web-3", Workload: "web", Port: 8080})
	if err != nil {
		t.Fatal(err)
	}
	for {
		p, err := stream.Recv()
		if err != nil {
			t.Fatalf("an unknown pod of workload web: no answer with exists false within 10 s (%v)", err)
		}
		if !p.GetExists() {
			return
		}
	}
}
