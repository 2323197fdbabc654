package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/proxy/authorize"
	"github.com/skeinmesh/skein/internal/proxy/h1"
	"github.com/skeinmesh/skein/internal/proxy/h2"
	"github.com/skeinmesh/skein/internal/proxy/meshtls"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// The inbound proxy under policy, as Run assembles it: the inbound
// listener (detection, mesh TLS with real certificates, opaque ports), the
// engines, the inbound layers with the authorization layer, and
// Authorizer.Run watching the policies. Only the last hop differs: the
// application is a witness on another port, which records exactly what
// reaches it.

const (
	frontendID = "spiffe://test.local/ns/shop/sa/frontend"
	batchID    = "spiffe://test.local/ns/jobs/sa/batch"
)

// testCA issues mesh certificates for SPIFFE IDs.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, id string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testMeshServer is the proxy's side of mesh TLS: its certificate, and
// client certificates from the test CA required.
type testMeshServer struct {
	cert tls.Certificate
	pool *x509.CertPool
}

func (m *testMeshServer) ServerTLS(nextProtos []string) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{m.cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: m.pool, NextProtos: nextProtos, MinVersion: tls.VersionTLS13}
}

// testPolicies is an authz.Lookup whose policies the test sets.
type testPolicies struct {
	mu       sync.Mutex
	ports    map[uint16]*authz.Inbound
	watchers []func()
}

func (p *testPolicies) Inbound(_ context.Context, port uint16) (*authz.Inbound, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if in, ok := p.ports[port]; ok {
		return in, nil
	}
	return nil, errors.New("no policy for the port")
}

func (p *testPolicies) Watch(ctx context.Context, changed func()) {
	p.mu.Lock()
	p.watchers = append(p.watchers, changed)
	p.mu.Unlock()
	<-ctx.Done()
}

// set replaces the policy of port and tells the watchers, as the policy
// client does when the controller sends a change.
func (p *testPolicies) set(port uint16, in *authz.Inbound) {
	p.mu.Lock()
	if p.ports == nil {
		p.ports = map[uint16]*authz.Inbound{}
	}
	copied := *in
	copied.Port = port
	p.ports[port] = &copied
	watchers := append([]func(){}, p.watchers...)
	p.mu.Unlock()
	for _, w := range watchers {
		w()
	}
}

// mergedListener accepts from several listeners and says it is the first:
// the proxy's own port. The others stand for the application's ports,
// whose connections iptables would have redirected to the proxy (TPROXY
// mode: the original destination is the local address).
type mergedListener struct {
	self  net.Listener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	all   []net.Listener
}

func newMergedListener(t *testing.T, n int) (*mergedListener, []netip.AddrPort) {
	m := &mergedListener{conns: make(chan net.Conn), done: make(chan struct{})}
	var addrs []netip.AddrPort
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		m.all = append(m.all, ln)
		addrs = append(addrs, netip.MustParseAddrPort(ln.Addr().String()))
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				select {
				case m.conns <- c:
				case <-m.done:
					c.Close()
					return
				}
			}
		}()
	}
	m.self = m.all[0]
	return m, addrs
}

func (m *mergedListener) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case <-m.done:
		return nil, net.ErrClosed
	}
}

func (m *mergedListener) Close() error {
	m.once.Do(func() {
		close(m.done)
		for _, ln := range m.all {
			ln.Close()
		}
	})
	return nil
}

func (m *mergedListener) Addr() net.Addr { return m.self.Addr() }

// opaqueWitness is the application of an opaque port: it echoes, and
// counts the connections and bytes that reached it.
type opaqueWitness struct {
	addr     string
	accepted atomic.Int64
	bytes    atomic.Int64
}

func newOpaqueWitness(t *testing.T) *opaqueWitness {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	w := &opaqueWitness{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			w.accepted.Add(1)
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					w.bytes.Add(int64(n))
					if n > 0 {
						c.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return w
}

// httpWitness is the application of the HTTP port: it counts requests by
// path; /slow answers after 50 ms; /block says it arrived and waits for
// release.
type httpWitness struct {
	mu      sync.Mutex
	hits    map[string]int
	arrived chan struct{}
	release chan struct{}
}

func (w *httpWitness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	w.hits[r.URL.Path]++
	w.mu.Unlock()
	switch r.URL.Path {
	case "/slow":
		time.Sleep(50 * time.Millisecond)
	case "/block":
		w.arrived <- struct{}{}
		select {
		case <-w.release:
		case <-time.After(5 * time.Second):
		}
	}
	io.WriteString(rw, "app:"+r.URL.Path)
}

func (w *httpWitness) count(path string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hits[path]
}

func (w *httpWitness) total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.hits {
		n += c
	}
	return n
}

// authzProxy is an inbound proxy under policy with its witnesses.
type authzProxy struct {
	ca           *testCA
	policies     *testPolicies
	reg          *metrics.Registry
	logs         *syncBuffer
	proxyPort    netip.AddrPort // the proxy's own port (mesh opaque)
	httpPort     netip.AddrPort // the application's HTTP port
	grpcPort     netip.AddrPort // the application's gRPC port
	opaquePort   netip.AddrPort // an opaque port of the application
	tunnelPort   netip.AddrPort // the application's port for CONNECT and upgrades
	tunnelClosed <-chan struct{}
	web          *httpWitness
	grpcApp      *flakyService
	opaque       *opaqueWitness
}

func startAuthzProxy(t *testing.T) *authzProxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := &authzProxy{ca: newTestCA(t), policies: &testPolicies{}, logs: &syncBuffer{},
		web: &httpWitness{hits: map[string]int{}, arrived: make(chan struct{}, 1), release: make(chan struct{})}, grpcApp: &flakyService{}}
	p.reg, _ = metrics.New(nil)
	log := slog.New(slog.NewTextHandler(p.logs, nil))
	webAddr := httpBackend(t, p.web)
	grpcAddr := grpcTestBackend(t, p.grpcApp)
	p.opaque = newOpaqueWitness(t)

	tunnelAddr, tunnelClosed := tunnelBackend(t)
	p.tunnelClosed = tunnelClosed
	ln, addrs := newMergedListener(t, 5)
	p.proxyPort, p.httpPort, p.grpcPort, p.opaquePort, p.tunnelPort = addrs[0], addrs[1], addrs[2], addrs[3], addrs[4]
	az := authorize.New(p.policies, p.reg, log)
	go az.Run(ctx)
	// Run watches the policies from a goroutine of its own: a change the
	// test makes before that watch is registered would reach no one.
	for registered := false; !registered; time.Sleep(time.Millisecond) {
		p.policies.mu.Lock()
		registered = len(p.policies.watchers) > 0
		p.policies.mu.Unlock()
	}
	cfg := stackConfig{metrics: p.reg, tunnelIdleTimeout: time.Hour, log: log, authz: p.policies}
	// The last hop: the application's witness for the port dialled.
	toWeb, toGRPC, toTunnel := newFixedUpstream(t, webAddr), newFixedUpstream(t, grpcAddr), newFixedUpstream(t, tunnelAddr)
	app := stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		switch req.Conn.OrigDst.Port() {
		case p.grpcPort.Port():
			return toGRPC.Serve(ctx, req)
		case p.tunnelPort.Port():
			return toTunnel.Serve(ctx, req)
		}
		return toWeb.Serve(ctx, req)
	})
	h := stack.Build(app, inboundLayers(cfg, az)...)
	http1, http2 := h1.NewServer(h, h1.DefaultConfig(), log), h2.NewServer(h, h2.DefaultConfig(), log)
	refused, err := refusedCounter(p.reg.Registerer())
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{
		direction: "inbound", ln: ln, transparent: true, http1: http1, http2: http2,
		dialOpaque: func(ctx context.Context, ci *stack.ConnInfo) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", p.opaque.addr)
		},
		opaquePorts: []uint16{p.opaquePort.Port()}, detectTimeout: time.Second,
		limits: newConnLimiter(1000, 1000), refused: refused, metrics: p.reg, log: log,
		mesh: &testMeshServer{cert: p.ca.issue(t, "spiffe://test.local/ns/shop/sa/web"), pool: p.ca.pool}, peerID: peerID,
		authorizer: az,
	}
	go l.serve(ctx)
	t.Cleanup(func() {
		ln.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		http1.Shutdown(sctx)
		http2.Shutdown(sctx)
		cancel()
		l.conns.Wait()
	})
	return p
}

// setAll gives the HTTP, gRPC and opaque ports the same policy.
func (p *authzProxy) setAll(in *authz.Inbound) {
	for _, port := range []netip.AddrPort{p.httpPort, p.grpcPort, p.opaquePort, p.tunnelPort} {
		p.policies.set(port.Port(), in)
	}
}

// dialFrom connects to dst from source address src (a loopback address).
func dialFrom(ctx context.Context, src string, dst netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	return d.DialContext(ctx, "tcp", dst.String())
}

// meshClient is a peer proxy as seen from this one: its certificate says
// id, and it connects from src.
type meshClient struct {
	p    *authzProxy
	id   string
	src  string
	cert tls.Certificate
	// last is the connection dialled last.
	last atomic.Pointer[watchedConn]
}

// watchedConn says when reading from it ended: the proxy closed it.
type watchedConn struct {
	net.Conn
	once  sync.Once
	ended chan struct{}
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(func() { close(c.ended) })
	}
	return n, err
}

func (p *authzProxy) meshed(t *testing.T, id, src string) *meshClient {
	return &meshClient{p: p, id: id, src: src, cert: p.ca.issue(t, id)}
}

func (m *meshClient) dialTLS(ctx context.Context, dst netip.AddrPort, alpn string) (net.Conn, error) {
	raw, err := dialFrom(ctx, m.src, dst)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, &tls.Config{Certificates: []tls.Certificate{m.cert}, InsecureSkipVerify: true,
		NextProtos: []string{alpn}, MinVersion: tls.VersionTLS13})
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	wc := &watchedConn{Conn: tc, ended: make(chan struct{})}
	m.last.Store(wc)
	return wc, nil
}

// httpClient speaks HTTP/2 inside mesh TLS to the application's port, as a
// peer proxy does.
func (m *meshClient) httpClient(t *testing.T) *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true) // HTTP/2 inside the mesh TLS the dial made
	tr := &http.Transport{Protocols: &protocols, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return m.dialTLS(ctx, m.p.httpPort, meshtls.ALPNHTTP)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func (m *meshClient) grpcClient(t *testing.T) testpb.TestServiceClient {
	cc, err := grpc.NewClient("passthrough:///app", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return m.dialTLS(ctx, m.p.grpcPort, meshtls.ALPNHTTP)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

// dialOpaque opens a peer's opaque mesh connection to the opaque port:
// mesh TLS to the proxy's own port, the real port in the header.
func (m *meshClient) dialOpaque(ctx context.Context) (net.Conn, error) {
	c, err := m.dialTLS(ctx, m.p.proxyPort, meshtls.ALPNOpaque)
	if err != nil {
		return nil, err
	}
	if err := meshtls.WriteOpaqueHeader(c, m.p.opaquePort.Port()); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// plainClient is a client outside the mesh connecting from src.
type plainClient struct {
	p   *authzProxy
	src string
}

func (c plainClient) httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialFrom(ctx, c.src, c.p.httpPort)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func (c plainClient) grpcClient(t *testing.T) testpb.TestServiceClient {
	cc, err := grpc.NewClient("passthrough:///app", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return dialFrom(ctx, c.src, c.p.grpcPort)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func (c plainClient) dialOpaque(ctx context.Context) (net.Conn, error) {
	return dialFrom(ctx, c.src, c.p.opaquePort)
}

// syncBuffer is a log sink tests read while the proxy writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
