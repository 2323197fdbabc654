package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/netns"
)

// refusedWithoutMTLS is the proxy error of a request that discovery has
// not answered for.
func refusedWithoutMTLS(dst string) string {
	return fmt.Sprintf("discovery has not answered for %s; refusing to send without mTLS", dst)
}

// addCPHost adds a host to the control-plane mesh for one test; it and its
// processes go away when the test ends.
func addCPHost(t *testing.T, cp *controlPlane, name string) *netns.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := cp.net.AddHost(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cp.mu.Lock()
		p := cp.proxies[h.Name]
		delete(cp.proxies, h.Name)
		cp.mu.Unlock()
		if p != nil {
			p.stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cp.net.RemoveHost(ctx, name); err != nil {
			t.Errorf("removing host %s: %v", name, err)
		}
	})
	return h
}

// stopControllerForTest stops the controller; whatever happens, it runs
// again once the test is over, for the tests after it.
func stopControllerForTest(t *testing.T, cp *controlPlane) {
	t.Helper()
	cp.controller.stop()
	t.Log("controller stopped")
	t.Cleanup(func() {
		select {
		case <-cp.controller.done:
		default:
			return // the test brought it back
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cp.startController(ctx); err != nil {
			t.Errorf("restarting the controller: %v", err)
		}
	})
}

// waitLive waits until the proxy in h serves /live (it listens; it need not
// be ready).
func waitLive(t *testing.T, h *netns.Host, p *proc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitReady(ctx, h, p, "http://127.0.0.1:4191/live"); err != nil {
		t.Fatal(err)
	}
}

// readAfterSending connects from h to addr, sends data and reads until the
// other side closes. It returns what it read, and fails the test if the
// connection was still open after 10 s (a refusal closes it at once).
func readAfterSending(t *testing.T, h *netns.Host, addr, data string) []byte {
	t.Helper()
	c, err := dialer(h)(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("connecting to %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, data) // may fail once the proxy has closed: that is fine
	got, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection to %s still open after 10 s (read %q)", addr, got)
	}
	return got
}

// postMarker posts marker to url from h with the given Host, and returns
// the answer's status, proxy error and how long it took.
func postMarker(t *testing.T, h *netns.Host, url, host, marker string) (int, string, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(marker))
	if host != "" {
		req.Host = host
	}
	start := time.Now()
	resp, err := httpClient(h).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Skein-Proxy-Error"), time.Since(start)
}

func TestControllerDownFromTheStartFailsClosed(t *testing.T) {
	cp := getControlPlane(t)
	late := addCPHost(t, cp, "late")
	stopControllerForTest(t, cp)
	capt := startCapture(t, cp.net)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A meshed client whose proxy starts while the controller is away: no
	// certificate, and no destination it ever watched.
	p, err := cp.startMeshedProxy(ctx, late, clientID)
	if err != nil {
		t.Fatal(err)
	}
	waitLive(t, late, p)

	marker := "SKEIN-UNWATCHED-" + hex.EncodeToString(randomBytes(8))
	// HTTP/1.1 to a meshed replica's own address. The first request waits
	// once for discovery's first answer; the next ones fail at once.
	podHTTP := fmt.Sprintf("%s:%d", cp.servers[0].IP, cpPortHTTP)
	for i := range 3 {
		code, why, took := postMarker(t, late, "http://"+podHTTP+"/echo", "", marker)
		t.Logf("request %d to %s: %d in %v", i, podHTTP, code, took.Round(time.Millisecond))
		if code != http.StatusServiceUnavailable || why != refusedWithoutMTLS(podHTTP) {
			t.Fatalf("request %d: %d with Skein-Proxy-Error %q, want 503 with %q", i, code, why, refusedWithoutMTLS(podHTTP))
		}
		if limit := map[bool]time.Duration{true: 3 * time.Second, false: 500 * time.Millisecond}[i == 0]; took > limit {
			t.Errorf("request %d was refused after %v, want within %v", i, took.Round(time.Millisecond), limit)
		}
	}
	// By service name through the virtual IP: the error names the service.
	name := fmt.Sprintf("echo.%s.svc.cluster.local:%d", echoNamespace, cpPortHTTP)
	code, why, took := postMarker(t, late, fmt.Sprintf("http://%s:%d/echo", cp.vip, cpPortHTTP), name, marker)
	if code != http.StatusServiceUnavailable || why != refusedWithoutMTLS(name) || took > 3*time.Second {
		t.Errorf("by name: %d with %q after %v, want 503 with %q within 3 s", code, why, took.Round(time.Millisecond), refusedWithoutMTLS(name))
	}
	// gRPC gets UNAVAILABLE with the reason.
	podGRPC := fmt.Sprintf("%s:%d", cp.servers[1].IP, cpPortGRPC)
	client, _ := grpcConn(t, late, podGRPC)
	_, err = client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte(marker)}})
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != refusedWithoutMTLS(podGRPC) {
		t.Errorf("gRPC call: %v, want UNAVAILABLE %q", err, refusedWithoutMTLS(podGRPC))
	}
	// An opaque connection is closed before anything reaches the server:
	// not even its greeting comes back.
	podOpaque := fmt.Sprintf("%s:%d", cp.servers[0].IP, cpPortOpaque)
	if got := readAfterSending(t, late, podOpaque, marker+"\r\nQUIT\r\n"); len(got) != 0 {
		t.Errorf("opaque connection to %s read %q, want it closed with nothing", podOpaque, got)
	}

	// The controller comes back: the same destinations work, over mTLS.
	if err := cp.startController(ctx); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if err := waitReady(ctx, late, p, "http://127.0.0.1:4191/ready"); err != nil {
		t.Fatal(err)
	}
	var last string
	if !waitFor(15*time.Second, func() bool {
		code, why, _ := postMarker(t, late, "http://"+podHTTP+"/echo", "", marker)
		last = fmt.Sprintf("%d %q", code, why)
		return code == http.StatusOK
	}) {
		t.Fatalf("no answer from %s within 15 s of the controller's return; last %s", podHTTP, last)
	}
	t.Logf("served %v after the controller was back", time.Since(back).Round(time.Millisecond))
	if _, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte(marker)}}); err != nil {
		t.Errorf("gRPC call after the controller's return: %v", err)
	}
	if n := scrape(t, late).sum("response_total", map[string]string{"direction": "outbound", "tls": "true", "server_id": echoID}); n < 2 {
		t.Errorf("the late client's proxy counted %v mTLS responses from %s, want at least 2", n, echoID)
	}

	checkWireHasNo(t, cp, capt, marker)
}

// checkWireHasNo sends a plaintext control marker from the unmeshed host,
// stops the capture and fails if marker crossed the wire (or the control
// did not, which would mean the capture saw nothing).
func checkWireHasNo(t *testing.T, cp *controlPlane, capt *capture, marker string) {
	t.Helper()
	control := "SKEIN-PLAINTEXT-" + hex.EncodeToString(randomBytes(8))
	resp, err := httpClient(cp.plain).Post(fmt.Sprintf("http://%s:%d/echo", cp.servers[0].IP, cpPortHTTP), "text/plain", strings.NewReader(control))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wire := capt.stop(t)
	if !bytes.Contains(wire, []byte(control)) {
		t.Fatalf("the capture (%d bytes) misses the unmeshed client's plaintext: it is not seeing the wire", len(wire))
	}
	if bytes.Contains(wire, []byte(marker)) {
		t.Errorf("the meshed client's marker %s crossed the wire in plaintext", marker)
	}
}

const strictID = "spiffe://cluster.local/ns/test/sa/strict"

func TestRequireMTLSRefusesPlaintextFromTheNetwork(t *testing.T) {
	cp := getControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	strict := addCPHost(t, cp, "strict")
	app, err := cp.start("app-strict", strict.Command(context.Background(), filepath.Join(binDir, "testapp"), "-id", "strict", "-log-input",
		"-grpc", fmt.Sprintf(":%d", cpPortGRPC), "-http", fmt.Sprintf(":%d", cpPortHTTP), "-banner", fmt.Sprintf(":%d", cpPortOpaque)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.stop)
	if err := waitLine(ctx, app, "ready"); err != nil {
		t.Fatal(err)
	}
	vip := cp.net.AllocateVIP()
	manifest := filepath.Join(cp.manifests, "strict.yaml")
	if err := os.WriteFile(manifest, []byte(fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: strict
  namespace: test
  annotations:
    skein.io/opaque-ports: "%[1]d"
spec:
  clusterIP: %[2]s
  selector: {app: strict}
  ports:
  - {name: http, port: %[3]d, targetPort: %[3]d}
  - {name: banner, port: %[1]d, targetPort: %[1]d}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata:
  name: strict
  namespace: test
  labels: {app: strict}
spec:
  serviceAccountName: strict
  command: [testapp]
  addresses: [%[4]q]
`, cpPortOpaque, vip, cpPortHTTP, strict.IP)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(manifest) })
	// HTTP and the opaque port require mTLS; gRPC's port does not.
	if err := cp.injectMeshed(ctx, strict, strictID, "-require-mtls-ports", fmt.Sprintf("%d,%d", cpPortHTTP, cpPortOpaque)); err != nil {
		t.Fatal(err)
	}

	// A meshed client is served on both ports.
	meshedMarker := "SKEIN-MESHED-" + hex.EncodeToString(randomBytes(8))
	name := fmt.Sprintf("strict.test.svc.cluster.local:%d", cpPortHTTP)
	var last string
	if !waitFor(15*time.Second, func() bool {
		code, why, _ := postMarker(t, cp.client, fmt.Sprintf("http://%s:%d/echo?%s", vip, cpPortHTTP, meshedMarker), name, meshedMarker)
		last = fmt.Sprintf("%d %q", code, why)
		return code == http.StatusOK
	}) {
		t.Fatalf("the meshed client got no answer from the strict server within 15 s; last %s", last)
	}
	got := readAfterSending(t, cp.client, fmt.Sprintf("%s:%d", vip, cpPortOpaque), meshedMarker+"\r\nQUIT\r\n")
	if want := "250 " + meshedMarker; !strings.Contains(string(got), want) {
		t.Errorf("meshed opaque connection read %q, want %q", got, want)
	}

	// An unmeshed client from another host is closed on both ports before
	// a byte reaches the application, and reads nothing.
	plainMarker := "SKEIN-PLAIN-" + hex.EncodeToString(randomBytes(8))
	httpAddr := fmt.Sprintf("%s:%d", strict.IP, cpPortHTTP)
	if got := readAfterSending(t, cp.plain, httpAddr, "GET /id?"+plainMarker+" HTTP/1.1\r\nHost: strict\r\n\r\n"); len(got) != 0 {
		t.Errorf("plaintext HTTP to %s read %q, want the connection closed with nothing", httpAddr, got)
	}
	opaqueAddr := fmt.Sprintf("%s:%d", strict.IP, cpPortOpaque)
	if got := readAfterSending(t, cp.plain, opaqueAddr, plainMarker+"\r\nQUIT\r\n"); len(got) != 0 {
		t.Errorf("plaintext to the opaque port %s read %q, want the connection closed with nothing (not even the greeting)", opaqueAddr, got)
	}
	// TLS that is not the mesh's (another ALPN, no client certificate) is
	// not mTLS either: closed after its ClientHello, no handshake answer.
	raw, err := dialer(cp.plain)(ctx, "tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}, ServerName: "strict"})
	err = tc.Handshake()
	raw.Close()
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("foreign TLS to %s: handshake ended with %v, want the connection closed", httpAddr, err)
	}
	// A port that does not require mTLS still serves plaintext.
	plainGRPC, _ := grpcConn(t, cp.plain, fmt.Sprintf("%s:%d", strict.IP, cpPortGRPC))
	if resp, err := plainGRPC.UnaryCall(ctx, &testpb.SimpleRequest{FillServerId: true}); err != nil || resp.GetServerId() != "strict" {
		t.Errorf("plaintext gRPC on a port without require-mTLS: %v (server %q), want an answer from strict", err, resp.GetServerId())
	}

	time.Sleep(200 * time.Millisecond) // let the application write its log
	log, _ := os.ReadFile(app.log)
	if !bytes.Contains(log, []byte("request /echo?"+meshedMarker)) || !bytes.Contains(log, []byte("line "+meshedMarker)) {
		t.Errorf("the application's log lacks the meshed client's requests:\n%s", log)
	}
	if bytes.Contains(log, []byte(plainMarker)) {
		t.Errorf("the unmeshed client's bytes reached the application:\n%s", log)
	}
	m := scrape(t, strict)
	if n := m.sum("tcp_close_total", map[string]string{"direction": "inbound", "errno": "require_mtls"}); n != 3 {
		t.Errorf("tcp_close_total{direction=inbound,errno=require_mtls} = %v, want 3 (plaintext HTTP, opaque, foreign TLS)", n)
	}
	if n := m.sum("response_total", map[string]string{"direction": "inbound", "tls": "true", "client_id": clientID}); n < 1 {
		t.Errorf("the strict proxy counted %v mTLS responses for %s, want at least 1", n, clientID)
	}
}
