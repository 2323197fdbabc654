package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/skeinmesh/skein/internal/netns"
)

// Ports of the wire mesh's servers, which run inside this test process on
// sockets in the server host's namespace, so a test can see what reached
// the application (a request count, a cancelled context).
const (
	wirePortH2C  = 8090 // net/http with HTTP/1.1 and h2c (prior knowledge)
	wirePortGRPC = 8091 // grpc-go: the conformance TestService
	wirePortH1   = 8092 // net/http, HTTP/1.1 only: trailers, 100-continue, WebSocket
)

// wire is the mesh of the conformance and attack tests: a meshed client, a
// meshed server whose applications are this process's servers, and an
// unmeshed host that talks to the server's inbound listener.
type wire struct {
	*mesh
	client, server, plain    *netns.Host
	clientProxy, serverProxy *proc
	app                      *wireApp
	grpcApp                  *conformanceService
	servers                  []interface{ Close() error }
	grpcServer               *grpc.Server
	discovery                string
	restarts                 int
}

var (
	wireOnce sync.Once
	wireMesh *wire
	wireErr  error
)

// getWire builds the wire mesh on first use; TestMain closes it.
func getWire(t *testing.T) *wire {
	t.Helper()
	requireRoot(t)
	wireOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		wireMesh, wireErr = buildWire(ctx)
	})
	if wireErr != nil {
		t.Fatalf("building the wire mesh: %v", wireErr)
	}
	t.Cleanup(func() { wireMesh.dumpLogs(t) })
	return wireMesh
}

func closeWireMesh() {
	if wireMesh != nil {
		wireMesh.close()
	}
}

func (w *wire) close() {
	w.grpcServer.Stop()
	for _, s := range w.servers {
		s.Close()
	}
	w.mesh.close()
}

func buildWire(ctx context.Context) (*wire, error) {
	dir, err := os.MkdirTemp("", "skein-e2e-wire-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // read by the proxies' uid
		return nil, err
	}
	m, err := newMesh(ctx, dir)
	if err != nil {
		return nil, err
	}
	w := &wire{mesh: m, app: &wireApp{}, grpcApp: newConformanceService(), grpcServer: grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))}
	testpb.RegisterTestServiceServer(w.grpcServer, w.grpcApp)
	if err := w.build(ctx, dir); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

func (w *wire) build(ctx context.Context, dir string) error {
	var err error
	for name, h := range map[string]**netns.Host{"client": &w.client, "server": &w.server, "plain": &w.plain} {
		if *h, err = w.net.AddHost(ctx, name); err != nil {
			return err
		}
	}
	listen := func(port int) (net.Listener, error) {
		var ln net.Listener
		err := w.server.Enter(func() (err error) {
			ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
			return err
		})
		return ln, err
	}
	h2c, err := listen(wirePortH2C)
	if err != nil {
		return err
	}
	both := &http.Server{Handler: w.app, ReadHeaderTimeout: 10 * time.Second, Protocols: new(http.Protocols)}
	both.Protocols.SetHTTP1(true)
	both.Protocols.SetUnencryptedHTTP2(true)
	go both.Serve(h2c)
	w.servers = append(w.servers, both)

	h1, err := listen(wirePortH1)
	if err != nil {
		return err
	}
	only1 := &http.Server{Handler: http1Handler(), ReadHeaderTimeout: 10 * time.Second}
	go only1.Serve(h1)
	w.servers = append(w.servers, only1)

	g, err := listen(wirePortGRPC)
	if err != nil {
		return err
	}
	go w.grpcServer.Serve(g)

	// No destinations: every request goes where the client sent it
	// (passthrough), to the server host, whose proxy takes it in.
	w.discovery = filepath.Join(dir, "discovery.yaml")
	if err := os.WriteFile(w.discovery, []byte("services: []\n"), 0o644); err != nil {
		return err
	}
	if w.clientProxy, err = w.inject(ctx, w.client, "redirect", "-discovery-file", w.discovery); err != nil {
		return err
	}
	if w.serverProxy, err = w.inject(ctx, w.server, "redirect", "-discovery-file", w.discovery); err != nil {
		return err
	}
	return nil
}

// restartProxy kills the proxy of h (the client or the server) and starts
// a fresh one in its place.
func (w *wire) restartProxy(t *testing.T, ctx context.Context, h *netns.Host) *proc {
	t.Helper()
	old := &w.clientProxy
	if h == w.server {
		old = &w.serverProxy
	}
	(*old).signal(syscall.SIGKILL)
	<-(*old).done
	w.restarts++
	p, err := w.startProxy(ctx, fmt.Sprintf("proxy-%s-%d", h.Name, w.restarts), h, "redirect", "-discovery-file", w.discovery)
	if err != nil {
		t.Fatal(err)
	}
	*old = p
	return p
}

// target is the address of one of the server's applications.
func (w *wire) target(port uint16) string {
	return netip.AddrPortFrom(w.server.IP, port).String()
}

// wireApp is the h2c application: it counts requests by path and answers
// GET with ?size=N bytes (default 1 KiB, so h2spec always gets a DATA frame).
// /hold... answers only when the request ends or after 20 s; /count?path=P
// answers how many requests for P arrived.
type wireApp struct {
	counts sync.Map // path -> *atomic.Int64
}

func (a *wireApp) counter(path string) *atomic.Int64 {
	c, _ := a.counts.LoadOrStore(path, new(atomic.Int64))
	return c.(*atomic.Int64)
}

func (a *wireApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/count" {
		fmt.Fprint(w, a.counter(r.URL.Query().Get("path")).Load())
		return
	}
	a.counter(r.URL.Path).Add(1)
	io.Copy(io.Discard, r.Body)
	if strings.HasPrefix(r.URL.Path, "/hold") {
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
		return
	}
	size := 1024
	if s := r.URL.Query().Get("size"); s != "" {
		size, _ = strconv.Atoi(s)
	}
	w.Header().Set("Content-Length", strconv.Itoa(size))
	chunk := make([]byte, min(size, 64<<10))
	for size > 0 {
		n := min(size, len(chunk))
		if _, err := w.Write(chunk[:n]); err != nil {
			return
		}
		size -= n
	}
}

// wireGRPCConn is a grpc-go connection from the meshed client to the wire
// mesh's gRPC server.
func wireGRPCConn(t *testing.T, w *wire) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+w.target(wirePortGRPC),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialer(w.client)(ctx, "tcp", addr)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}
