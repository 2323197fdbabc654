package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/controller"
	ctlidentity "github.com/skeinmesh/skein/internal/controller/identity"
	destinationpb "github.com/skeinmesh/skein/proto/destination"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// A snapshot of 25,000 endpoints with names of everyday length is past
// gRPC's 4 MiB default receive limit: the proxy's connection to a real
// controller takes it, over the mesh TLS the controller requires for
// discovery (the stream waits for the proxy's first certificate).
func TestControlPlaneReceivesSnapshotOf25000Endpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a controller with 25,000 endpoints")
	}
	const endpoints = 25000
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	dir := t.TempDir()
	idDir := filepath.Join(dir, "identity")
	if _, err := ctlidentity.Generate(ctlidentity.GenerateConfig{TrustDomain: td, Dir: idDir}); err != nil {
		t.Fatal(err)
	}
	manifests := filepath.Join(dir, "manifests")
	if err := os.Mkdir(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(`apiVersion: v1
kind: Service
metadata: {name: checkout-frontend-api, namespace: payments-production}
spec:
  clusterIP: 10.96.0.10
  selector: {app: checkout-frontend-api}
  ports:
  - {name: http, port: 8080, targetPort: 8080}
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: checkout-frontend-api, namespace: payments-production, labels: {app: checkout-frontend-api}}
spec:
  serviceAccountName: checkout-frontend-api
  command: [api]
  addresses:
`)
	for i := range endpoints {
		fmt.Fprintf(&b, "  - 10.%d.%d.%d\n", 1+i/65536, i/256%256, i%256)
	}
	if err := os.WriteFile(filepath.Join(manifests, "big.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cfg := controller.Default()
	cfg.ManifestsDir = manifests
	cfg.IdentityDir = idDir
	cfg.JoinTokenKey = filepath.Join(idDir, ctlidentity.JoinTokenKeyFile)
	cfg.GRPCAddr, cfg.AdminAddr = freeLoopbackAddr(t), freeLoopbackAddr(t)
	cfg.Log = slog.New(slog.DiscardHandler)
	stopped := make(chan error, 1)
	go func() { stopped <- controller.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	waitForReady(t, "http://"+cfg.AdminAddr+"/ready", stopped)

	id := spiffeid.RequireFromSegments(td, "ns", "demo", "sa", "client")
	key, err := ctlidentity.LoadJoinTokenKey(cfg.JoinTokenKey)
	if err != nil {
		t.Fatal(err)
	}
	token, err := ctlidentity.MintJoinToken(key, id, ctlidentity.Audience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	pcfg := Default()
	pcfg.ControllerAddr = cfg.GRPCAddr
	pcfg.Identity = id.String()
	pcfg.TokenFile = tokenFile
	pcfg.TrustAnchorsFile = filepath.Join(idDir, ctlidentity.TrustAnchorFile)
	if err := pcfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cp, err := connectControlPlane(pcfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cp.close()
	go cp.identity.Run(ctx)

	stream, err := destinationpb.NewDestinationClient(cp.conn).Get(ctx, &destinationpb.GetDestination{Path: "10.96.0.10:8080"}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(first.GetSnapshot().GetEndpoints()); got != endpoints {
		t.Fatalf("first update has %d endpoints, want a snapshot of %d", got, endpoints)
	}
	if size := proto.Size(first); size <= 4<<20 {
		t.Fatalf("snapshot is %d bytes, not past gRPC's 4 MiB default: the test proves nothing", size)
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitForReady(t *testing.T, url string, stopped <-chan error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-stopped:
			t.Fatalf("controller stopped: %v", err)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("controller not ready after 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
