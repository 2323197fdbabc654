package tapapi_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/tapapi"
	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/pki"
	"github.com/skeinmesh/skein/internal/tap"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

const trustDomain = "tap.test"

// testPKI is a trust anchor and issuer, the controller's identity
// service over them, and leaf certificates for fake proxies.
type testPKI struct {
	anchor    *x509.Certificate
	issuer    *x509.Certificate
	issuerKey *ecdsa.PrivateKey
	ids       *identity.Service
}

type staticIssuer struct{ i *identity.Issuer }

func (s staticIssuer) Issuer() *identity.Issuer { return s.i }

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	now := time.Now()
	anchorKey, _ := pki.GenerateKey()
	anchor, err := pki.NewTrustAnchor(trustDomain, anchorKey, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	issuerKey, _ := pki.GenerateKey()
	issuer, err := pki.NewIssuer(trustDomain, issuerKey, anchor, anchorKey, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodePrivateKey(issuerKey)
	parsed, err := identity.ParseIssuer(pki.EncodeCertificates(issuer), keyPEM, pki.EncodeCertificates(anchor), now)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := identity.NewService(identity.Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString(trustDomain),
		Issuers:     staticIssuer{parsed},
		Tokens:      identity.AnyOf(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{anchor: anchor, issuer: issuer, issuerKey: issuerKey, ids: ids}
}

// leaf issues a certificate for a SPIFFE ID.
func (p *testPKI) leaf(t *testing.T, id string) tls.Certificate {
	t.Helper()
	key, _ := pki.GenerateKey()
	serial, _ := pki.NewSerial()
	u, _ := url.Parse(id)
	der, err := x509.CreateCertificate(nil, &x509.Certificate{
		SerialNumber: serial, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, p.issuer, &key.PublicKey, p.issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, p.issuer.Raw}, PrivateKey: key}
}

// fakeProxy is a real gRPC Tap server on a loopback address, presenting
// a workload identity and accepting only the controller's, as a proxy
// does. It answers every Observe with its script and then holds the
// stream until the caller leaves.
type fakeProxy struct {
	tappb.UnimplementedTapServer
	script []*tappb.Event

	mu       sync.Mutex
	requests []*tappb.ObserveRequest
	opened   chan struct{} // one value per Observe
	ended    chan struct{} // one value per Observe that ended
}

func (f *fakeProxy) Observe(req *tappb.ObserveRequest, stream tappb.Tap_ObserveServer) error {
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	f.opened <- struct{}{}
	defer func() { f.ended <- struct{}{} }()
	for _, ev := range f.script {
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	<-stream.Context().Done()
	return nil
}

func (f *fakeProxy) lastRequest(t *testing.T) *tappb.ObserveRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		t.Fatal("the proxy was never tapped")
	}
	return f.requests[len(f.requests)-1]
}

// startFakeProxy serves a fakeProxy on ip:port presenting identity id.
func startFakeProxy(t *testing.T, p *testPKI, ip string, port uint16, id string, script ...*tappb.Event) *fakeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeProxy{script: script, opened: make(chan struct{}, 16), ended: make(chan struct{}, 16)}
	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(trustDomain), []*x509.Certificate{p.anchor})
	controller := meshid.Controller(spiffeid.RequireTrustDomainFromString(trustDomain))
	cert := p.leaf(t, id)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			got, _, err := x509svid.ParseAndVerify(raw, bundle)
			if err != nil {
				return err
			}
			if got != controller {
				return fmt.Errorf("client %s is not the controller", got)
			}
			return nil
		},
	})))
	tappb.RegisterTapServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return f
}

// freePort finds a port free on every loopback address the test uses.
func freePort(t *testing.T, ips ...string) uint16 {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		free := true
		for _, ip := range ips {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return port
		}
	}
	t.Fatal("no port free on every address")
	return 0
}

// tapServer serves the tap API over m on a loopback HTTP server.
func tapServer(t *testing.T, p *testPKI, m *model.Model, port uint16, tune func(*tapapi.Config)) *httptest.Server {
	t.Helper()
	self := meshid.Controller(spiffeid.RequireTrustDomainFromString(trustDomain))
	cfg := tapapi.Config{
		Model:     m,
		AdminPort: port,
		TLS: func(id string) (*tls.Config, error) {
			sid, err := spiffeid.FromString(id)
			if err != nil {
				return nil, err
			}
			return p.ids.ClientTLS(self, sid), nil
		},
	}
	if tune != nil {
		tune(&cfg)
	}
	mux := http.NewServeMux()
	tapapi.Register(mux, cfg)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnContext = tapapi.ConnContext
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// openTap starts a tap; the caller reads events with next and closes.
type tapStream struct {
	resp   *http.Response
	lines  *bufio.Scanner
	cancel context.CancelFunc
}

func openTap(t *testing.T, srv *httptest.Server, q url.Values) *tapStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+tap.APIPath+"?"+q.Encode(), nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("tap answered %s", resp.Status)
	}
	s := &tapStream{resp: resp, lines: bufio.NewScanner(resp.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s
}

func (s *tapStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next reads n events.
func (s *tapStream) next(t *testing.T, n int) []tap.Event {
	t.Helper()
	var out []tap.Event
	for len(out) < n {
		if !s.lines.Scan() {
			t.Fatalf("the stream ended after %d of %d events: %v", len(out), n, s.lines.Err())
		}
		var e tap.Event
		if err := json.Unmarshal(s.lines.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", s.lines.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// waitFor waits for one value on c, failing after a generous while.
func waitFor(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(15 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func instance(ns, name, workload, ip string, meshed bool, ann map[string]string, labels map[string]string) model.Instance {
	return model.Instance{
		Namespace: ns, Name: name, Workload: workload, ServiceAccount: workload,
		IP: netip.MustParseAddr(ip), Ready: true, Meshed: meshed, Annotations: ann, Labels: labels,
	}
}

func workloadID(ns, sa string) string { return model.Identity(trustDomain, ns, sa) }

// script events.
func requestEvent(stream uint64, dropped uint64, method, path string) *tappb.Event {
	return &tappb.Event{
		Stream: stream, Time: timestamppb.Now(), Direction: "inbound", Dropped: dropped,
		// The source as an inbound event gives it: address and identity;
		// the controller names its workload from the model.
		Source:      &tappb.Peer{Address: "127.0.0.4:41000", Identity: workloadID("demo", "db")},
		Destination: &tappb.Peer{Address: "10.0.0.1:8080", Labels: map[string]string{"namespace": "demo", "workload": "web", "service": "web"}},
		Kind: &tappb.Event_Request{Request: &tappb.RequestStart{
			Method: method, Scheme: "http", Authority: "web.demo:8080", Path: path, Route: "demo/votes",
			Headers: []*tappb.Header{{Name: "x-user", Value: "ann"}, {Name: "authorization", Value: tap.Redacted}},
		}},
	}
}

func responseEvent(stream uint64, status uint32, latency time.Duration) *tappb.Event {
	return &tappb.Event{Stream: stream, Time: timestamppb.Now(), Direction: "inbound", Kind: &tappb.Event_Response{Response: &tappb.ResponseStart{
		Status: status, Latency: durationpb.New(latency),
	}}}
}

func endEvent(stream uint64, grpcStatus int32, d time.Duration) *tappb.Event {
	return &tappb.Event{Stream: stream, Time: timestamppb.Now(), Direction: "inbound", Kind: &tappb.Event_End{End: &tappb.End{
		GrpcStatus: grpcStatus, Duration: durationpb.New(d), RequestBytes: 12, ResponseBytes: 34, Status: 200,
		ResponseBodyPrefix: []byte(`{"ok":true}`),
	}}}
}

type netipAddr = netip.Addr

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
