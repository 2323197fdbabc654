package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/skeinmesh/skein/internal/netns"
	"github.com/skeinmesh/skein/internal/pki"
	"github.com/skeinmesh/skein/internal/proxy/identity"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

// capture records every TCP packet that crosses the hub's bridge, that is
// every byte on the wire between two test hosts.
type capture struct {
	cmd    *exec.Cmd
	file   string
	stderr *bytes.Buffer
}

func startCapture(t *testing.T, n *netns.Network) *capture {
	t.Helper()
	file := filepath.Join(t.TempDir(), "wire.pcap")
	// -Z root: tcpdump would otherwise write the file as its own user, who
	// cannot write in the test's private temporary directory.
	cmd := exec.Command("ip", "netns", "exec", n.Hub(), "tcpdump", "-Z", "root", "--immediate-mode", "-i", "br0", "-U", "-s", "0", "-w", file, "tcp")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting tcpdump: %v", err)
	}
	// tcpdump says "listening on br0" once it captures.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "listening on") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("tcpdump did not start: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return &capture{cmd: cmd, file: file, stderr: &stderr}
}

// stop ends the capture and returns the raw bytes captured.
func (c *capture) stop(t *testing.T) []byte {
	t.Helper()
	time.Sleep(200 * time.Millisecond) // let the last packets through
	c.cmd.Process.Signal(syscall.SIGINT)
	c.cmd.Wait()
	b, err := os.ReadFile(c.file)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tcpdump: %s", strings.TrimSpace(c.stderr.String()))
	return b
}

func TestMTLSKeepsApplicationBytesOffTheWire(t *testing.T) {
	cp := getControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	secret := "SKEIN-SECRET-" + hex.EncodeToString(randomBytes(8))
	capt := startCapture(t, cp.net)

	// HTTP/1.1 through the mesh, by service name: the server gets the body.
	body := strings.Repeat(secret, 50)
	sum := sha256.Sum256([]byte(body))
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://echo.%s.svc.cluster.local:%d/echo", echoNamespace, cpPortHTTP), strings.NewReader(body))
	req.URL.Host = fmt.Sprintf("%s:%d", cp.vip, cpPortHTTP)
	req.Host = fmt.Sprintf("echo.%s.svc.cluster.local:%d", echoNamespace, cpPortHTTP)
	resp, err := httpClient(cp.client).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	echoed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("X-Body-Sha256") != hex.EncodeToString(sum[:]) || string(echoed) != body {
		t.Fatalf("the server did not get the request body intact (status %d)", resp.StatusCode)
	}
	// gRPC through the mesh.
	client, _ := grpcConn(t, cp.client, fmt.Sprintf("%s:%d", cp.vip, cpPortGRPC))
	if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte(secret)}}); err != nil {
		t.Fatal(err)
	}
	// Opaque TCP through the mesh.
	c, err := dialer(cp.client)(ctx, "tcp", fmt.Sprintf("%s:%d", cp.vip, cpPortOpaque))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 256)
	n, _ := c.Read(buf) // greeting
	fmt.Fprintf(c, "%s\r\nQUIT\r\n", secret)
	rest, _ := io.ReadAll(c)
	c.Close()
	if !strings.Contains(string(buf[:n])+string(rest), "250 "+secret) {
		t.Fatalf("opaque echo through the mesh: got %q", string(buf[:n])+string(rest))
	}
	checkWireHasNo(t, cp, capt, secret)
}

func TestServerProxyKnowsTheClientIdentity(t *testing.T) {
	cp := getControlPlane(t)
	inbound, out := meshedCalls(t, cp, 20)
	if inbound < 20 {
		t.Errorf("server proxies counted %v inbound responses with client_id=%s and tls=true, want at least 20", inbound, clientID)
	}
	if out < 20 {
		t.Errorf("client proxy counted %v outbound responses with server_id=%s, want at least 20", out, echoID)
	}
}

// meshedCalls makes n gRPC calls from cp's meshed client through the mesh
// and returns what the proxies count then: responses over mTLS with the
// client's identity on the servers' proxies, with the server's identity on
// the client's.
func meshedCalls(t *testing.T, cp *controlPlane, n int) (inbound, outbound float64) {
	t.Helper()
	client, _ := grpcConn(t, cp.client, fmt.Sprintf("%s:%d", cp.vip, cpPortGRPC))
	for range n {
		if _, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range cp.servers[:2] {
		inbound += scrape(t, h).sum("response_total", map[string]string{"direction": "inbound", "tls": "true", "client_id": clientID})
	}
	outbound = scrape(t, cp.client).sum("response_total", map[string]string{"direction": "outbound", "tls": "true", "server_id": echoID})
	return inbound, outbound
}

func TestPeerFromAnotherTrustAnchorIsRefused(t *testing.T) {
	cp := getControlPlane(t)
	// A certificate for the client's own identity, but from an anchor the
	// mesh does not trust.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id, _ := url.Parse(clientID)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{id}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := dialer(cp.plain)(context.Background(), "tcp", fmt.Sprintf("%s:%d", cp.servers[0].IP, cpPortHTTP))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(raw, &tls.Config{
		Certificates:       []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos:         []string{"skein/http"},
		InsecureSkipVerify: true, // this test is about the server's check
		MinVersion:         tls.VersionTLS13,
	})
	err = tc.Handshake()
	if err == nil {
		// With TLS 1.3 the server's verdict on the client certificate
		// arrives after the client's handshake: read it.
		_, err = tc.Read(make([]byte, 1))
	}
	// The server must say why: a TLS alert, not a timeout or a silent
	// close (a server that accepted the certificate and then waited would
	// fail here on the read deadline).
	const alert = "remote error: tls: bad certificate"
	if err == nil || !strings.Contains(err.Error(), alert) {
		t.Fatalf("the server proxy answered a client certificate from another trust anchor with %v, want the TLS alert %q", err, alert)
	}
	t.Logf("refused as it should be: %v", err)
}

func TestIdentityServiceRefusesBadTokens(t *testing.T) {
	cp := getControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := filepath.Join(cp.identityDir, "join-token.key")
	mint := func(args ...string) string {
		out, err := skein(ctx, append([]string{"identity", "token", "--key", key}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	cases := []struct {
		name, identity, token, reason string
	}{
		{"wrong audience", clientID, mint("--identity", clientID, "--audience", "other.example"), "audience"},
		{"expired", clientID, mint("--identity", clientID, "--ttl", "-10m"), "expired"},
		{"another identity", echoID, mint("--identity", clientID), clientID},
		{"not a token", clientID, "garbage", "token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := certifyFrom(ctx, t, cp, c.identity, c.token)
			if err == nil {
				t.Fatal("the identity service certified a key for a bad token")
			}
			if !strings.Contains(err.Error(), c.reason) {
				t.Errorf("refused with %q, want a reason mentioning %q", err, c.reason)
			}
		})
	}
	t.Run("good token", func(t *testing.T) {
		if err := certifyFrom(ctx, t, cp, clientID, mint("--identity", clientID)); err != nil {
			t.Errorf("a good token was refused: %v", err)
		}
	})
}

// steadyLoad makes gRPC calls at about rate per second over one client
// connection until stop is closed, recording which replica answered when.
type steadyLoad struct {
	mu       sync.Mutex
	answers  []answer
	failures []error
	calls    atomic.Int64
}

type answer struct {
	at     time.Time
	server string
}

func runSteadyLoad(t *testing.T, h *netns.Host, target string, rate int, stop <-chan struct{}) (*steadyLoad, *sync.WaitGroup) {
	client, _ := grpcConn(t, h, target)
	l := &steadyLoad{}
	var wg sync.WaitGroup
	const workers = 4
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second * workers / time.Duration(rate))
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{FillServerId: true})
				cancel()
				l.calls.Add(1)
				l.mu.Lock()
				if err != nil {
					l.failures = append(l.failures, err)
				} else {
					l.answers = append(l.answers, answer{at: time.Now(), server: resp.GetServerId()})
				}
				l.mu.Unlock()
			}
		}()
	}
	return l, &wg
}

// firstAnswerFrom returns when server first answered after since.
func (l *steadyLoad) firstAnswerFrom(server string, since time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.answers {
		if a.server == server && !a.at.Before(since) {
			return a.at, true
		}
	}
	return time.Time{}, false
}

// lastAnswerFrom returns when server last answered.
func (l *steadyLoad) lastAnswerFrom(server string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.answers) - 1; i >= 0; i-- {
		if l.answers[i].server == server {
			return l.answers[i].at, true
		}
	}
	return time.Time{}, false
}

func (l *steadyLoad) failed() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.failures...)
}

func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

func TestEndpointChangesReachTrafficWithinASecond(t *testing.T) {
	cp := getControlPlane(t)
	stop := make(chan struct{})
	load, wg := runSteadyLoad(t, cp.client, fmt.Sprintf("%s:%d", cp.vip, cpPortGRPC), 200, stop)
	defer func() { close(stop); wg.Wait() }()
	newcomer := cp.servers[2]

	time.Sleep(time.Second)
	added := time.Now()
	if err := cp.setInService(newcomer, true); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { _, ok := load.firstAnswerFrom(newcomer.Name, added); return ok }) {
		t.Fatalf("%s never answered after it was added", newcomer.Name)
	}
	first, _ := load.firstAnswerFrom(newcomer.Name, added)
	t.Logf("new endpoint answered %v after it appeared in the manifests", first.Sub(added).Round(time.Millisecond))
	if d := first.Sub(added); d > time.Second {
		t.Errorf("new endpoint got its first request %v after it appeared, want within 1 s", d)
	}

	time.Sleep(time.Second)
	removed := time.Now()
	if err := cp.setInService(newcomer, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	last, _ := load.lastAnswerFrom(newcomer.Name)
	t.Logf("removed endpoint answered last %v after its removal", last.Sub(removed).Round(time.Millisecond))
	if d := last.Sub(removed); d > time.Second {
		t.Errorf("removed endpoint still got requests %v after its removal, want none after 1 s", d)
	}
	if f := load.failed(); len(f) > 0 {
		t.Errorf("%d of %d calls failed while endpoints changed; first: %v", len(f), load.calls.Load(), f[0])
	}
}

func TestControllerOutageFailsNoRequest(t *testing.T) {
	cp := getControlPlane(t)
	// An HTTP destination the client watches before the outage.
	name := fmt.Sprintf("echo.%s.svc.cluster.local:%d", echoNamespace, cpPortHTTP)
	watched := fmt.Sprintf("http://%s:%d/echo", cp.vip, cpPortHTTP)
	if code, why, _ := postMarker(t, cp.client, watched, name, "warm-up"); code != http.StatusOK {
		t.Fatalf("before the outage: %d %q from %s, want 200", code, why, name)
	}
	capt := startCapture(t, cp.net)
	stop := make(chan struct{})
	load, wg := runSteadyLoad(t, cp.client, fmt.Sprintf("%s:%d", cp.vip, cpPortGRPC), 100, stop)
	defer func() { close(stop); wg.Wait() }()
	newcomer := cp.servers[2]

	time.Sleep(time.Second)
	stopControllerForTest(t, cp)
	down := time.Now()
	// While it is down, an endpoint is added to the source.
	if err := cp.setInService(newcomer, true); err != nil {
		t.Fatal(err)
	}
	// A watched destination keeps working, over mTLS; one the client never
	// watched is refused, never sent in plaintext on a guess.
	marker := "SKEIN-OUTAGE-" + hex.EncodeToString(randomBytes(8))
	if code, why, _ := postMarker(t, cp.client, watched, name, marker); code != http.StatusOK {
		t.Errorf("watched destination during the outage: %d %q, want 200", code, why)
	}
	unwatched := fmt.Sprintf("%s:%d", cp.servers[1].IP, cpPortHTTP)
	for i := range 2 {
		code, why, took := postMarker(t, cp.client, "http://"+unwatched+"/echo", "", marker)
		t.Logf("unwatched destination during the outage, request %d: %d in %v", i, code, took.Round(time.Millisecond))
		if code != http.StatusServiceUnavailable || why != refusedWithoutMTLS(unwatched) {
			t.Errorf("unwatched destination during the outage, request %d: %d %q, want 503 %q", i, code, why, refusedWithoutMTLS(unwatched))
		}
	}
	unwatchedOpaque := fmt.Sprintf("%s:%d", cp.servers[1].IP, cpPortOpaque)
	if got := readAfterSending(t, cp.client, unwatchedOpaque, marker+"\r\nQUIT\r\n"); len(got) != 0 {
		t.Errorf("opaque connection to unwatched %s during the outage read %q, want it closed with nothing", unwatchedOpaque, got)
	}
	time.Sleep(30*time.Second - time.Since(down))
	if f := load.failed(); len(f) > 0 {
		t.Fatalf("%d calls failed while the controller was down; first: %v", len(f), f[0])
	}
	if _, ok := load.firstAnswerFrom(newcomer.Name, time.Time{}); ok {
		t.Fatalf("%s got traffic while the controller that knows it was down", newcomer.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cp.startController(ctx); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if !waitFor(10*time.Second, func() bool { _, ok := load.firstAnswerFrom(newcomer.Name, back); return ok }) {
		t.Fatalf("%s got no traffic within 10 s of the controller's return", newcomer.Name)
	}
	first, _ := load.firstAnswerFrom(newcomer.Name, back)
	t.Logf("endpoint added during the outage answered %v after the controller was back", first.Sub(back).Round(time.Millisecond))
	if d := first.Sub(back); d > 2*time.Second {
		t.Errorf("endpoint added during the outage got traffic %v after the controller's return, want within 2 s", d)
	}
	if f := load.failed(); len(f) > 0 {
		t.Errorf("%d of %d calls failed; first: %v", len(f), load.calls.Load(), f[0])
	}
	if err := cp.setInService(newcomer, false); err != nil {
		t.Fatal(err)
	}
	checkWireHasNo(t, cp, capt, marker)
}

// proxyIdentity reads a proxy's /identity.
type certInfo struct {
	Identity    string `json:"identity"`
	IssuerKeyID string `json:"issuer_key_id"`
	Serial      string `json:"serial"`
	NotAfter    string `json:"not_after"`
	// TrustAnchors are the SHA-256 fingerprints of the anchors it trusts.
	TrustAnchors []string `json:"trust_anchors"`
}

// proxyCert reads the /identity of h's proxy from inside h: it answers
// loopback clients only.
func proxyCert(t *testing.T, h *netns.Host) certInfo {
	t.Helper()
	resp, err := httpClient(h).Get("http://127.0.0.1:4191/identity")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ci certInfo
	if err := json.NewDecoder(resp.Body).Decode(&ci); err != nil {
		t.Fatalf("decoding /identity: %v", err)
	}
	return ci
}

func TestCertificatesRollOverAndANewIssuerIsPickedUp(t *testing.T) {
	cp := newControlPlane(t, 30*time.Second)
	stop := make(chan struct{})
	load, wg := runSteadyLoad(t, cp.client, fmt.Sprintf("%s:%d", cp.vip, cpPortGRPC), 100, stop)

	serials := map[string]map[string]bool{}
	issuers := map[string]bool{}
	observe := func() {
		for _, h := range []*netns.Host{cp.client, cp.servers[0], cp.servers[1]} {
			ci := proxyCert(t, h)
			if serials[h.Name] == nil {
				serials[h.Name] = map[string]bool{}
			}
			serials[h.Name][ci.Serial] = true
			issuers[ci.IssuerKeyID] = true
		}
	}
	start := time.Now()
	replaced := false
	for time.Since(start) < 60*time.Second {
		observe()
		if !replaced && time.Since(start) > 25*time.Second {
			// A new issuer under the same trust anchor, written in place.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := skein(ctx, "identity", "issuer", "--anchor-cert", filepath.Join(cp.identityDir, "ca.crt"),
				"--anchor-key", filepath.Join(cp.dir, "anchor.key"), "--out", cp.identityDir)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			replaced = true
			t.Log("issuer replaced on disk")
		}
		time.Sleep(500 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	observe()

	if f := load.failed(); len(f) > 0 {
		t.Errorf("%d of %d calls failed while certificates rolled over; first: %v", len(f), load.calls.Load(), f[0])
	}
	for name, s := range serials {
		if len(s) < 2 {
			t.Errorf("%s's proxy held %d certificate(s) in 60 s of 30 s certificates, want it to renew", name, len(s))
		}
	}
	if len(issuers) < 2 {
		t.Errorf("certificates came from %d issuer(s), want the replaced issuer's too: %v", len(issuers), issuers)
	}
	t.Logf("%d calls; serials seen per proxy: %v; issuers: %v", load.calls.Load(), serials, issuers)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// certifyFrom asks the controller's identity service, from the client's
// host and over TLS checked against the trust anchor, to certify a fresh
// key for id with token.
func certifyFrom(ctx context.Context, t *testing.T, cp *controlPlane, id, token string) error {
	t.Helper()
	anchorsPEM, err := os.ReadFile(filepath.Join(cp.identityDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("%s:%d", cp.ctl.IP, portCtlGRPC)
	return certify(ctx, t, cp.plain, addr, anchorsPEM, spiffeid.RequireFromString(controllerID), id, token)
}

// certify asks the identity service at addr, from host h and over TLS
// checked against the trust anchors, to certify a fresh key for id with
// token.
func certify(ctx context.Context, t *testing.T, h *netns.Host, addr string, anchorsPEM []byte, controller spiffeid.ID, id, token string) error {
	t.Helper()
	_, err := certifiedPair(ctx, t, h, addr, anchorsPEM, controller, id, token)
	return err
}

// certifiedPair is certify that also returns the certified key with its
// chain, ready to serve.
func certifiedPair(ctx context.Context, t *testing.T, h *netns.Host, addr string, anchorsPEM []byte, controller spiffeid.ID, id, token string) (tls.Certificate, error) {
	t.Helper()
	anchors, err := pki.ParseCertificates(anchorsPEM)
	if err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewTLS(identity.ControllerTLS(anchors, controller))
	dial := dialer(h)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id)
	csr, err := pki.NewCSR(key, u)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := identitypb.NewIdentityClient(conn).Certify(ctx, &identitypb.CertifyRequest{
		Identity: id, Token: []byte(token), CertificateSigningRequest: csr,
	})
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{
		Certificate: append([][]byte{resp.GetLeafCertificate()}, resp.GetIntermediateCertificates()...),
		PrivateKey:  key,
	}, nil
}
