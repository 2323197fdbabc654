package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/controller"
	ctlidentity "github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/metricsapi"
	"github.com/skeinmesh/skein/internal/proxy/mirror"
	"github.com/skeinmesh/skein/internal/proxy/redact"
	mirrorpb "github.com/skeinmesh/skein/proto/mirror"
)

// A mismatch a proxy's mirror layer found reaches a real controller over
// the proxy's mesh-TLS gRPC connection (MirrorDiffs.Report), and the
// controller's metrics API (what `skein diff` reads) shows it beside the
// counts. Reports sent before the proxy has its certificate are refused
// and sent again.
func TestMirrorExamplesReachTheController(t *testing.T) {
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
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"route_name":"`+
			mirrorRoute+`","backend":"`+mirrorShadowName+`","result":"mismatch"},"value":[1700000000,"1"]}]}}`)
	}))
	t.Cleanup(prom.Close)

	ctx, cancel := context.WithCancel(context.Background())
	cfg := controller.Default()
	cfg.ManifestsDir = manifests
	cfg.IdentityDir = idDir
	cfg.JoinTokenKey = filepath.Join(idDir, ctlidentity.JoinTokenKeyFile)
	cfg.GRPCAddr, cfg.AdminAddr, cfg.APIAddr = freeLoopbackAddr(t), freeLoopbackAddr(t), freeLoopbackAddr(t)
	cfg.PrometheusURL = prom.URL
	cfg.Log = slog.New(slog.DiscardHandler)
	stopped := make(chan error, 1)
	go func() { stopped <- controller.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	waitForReady(t, "http://"+cfg.AdminAddr+"/ready", stopped)

	id := spiffeid.RequireFromSegments(td, "ns", "test", "sa", "client")
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
	cp, err := connectControlPlane(pcfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer cp.close()

	// One mismatch, found by the mirror layer of a real outbound stack.
	primary := listen(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("set-cookie", "session=primary-secret")
		io.WriteString(w, "v1")
	}))
	shadow := listen(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("set-cookie", "session=mirror-secret")
		io.WriteString(w, "v2")
	}))
	p := newMirrorProxy(t, primary, shadow, mirrorRule(100, "set-cookie"), mirror.Config{})
	p.send(t, "GET", "", nil)
	p.mirrors.Wait()

	// Reporting starts before the proxy has a certificate: the controller
	// refuses it until then, and the example waits for the next report.
	go p.ex.Report(ctx, mirrorpb.NewMirrorDiffsClient(cp.conn), 50*time.Millisecond, quietLog())
	time.Sleep(200 * time.Millisecond)
	go cp.identity.Run(ctx)

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + cfg.APIAddr + "/api/v1/diff?namespace=test&route=web-mirror")
		if err != nil {
			t.Fatal(err)
		}
		var got metricsapi.DiffResponse
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Rows) == 1 && len(got.Rows[0].Examples) > 0 {
			ex := got.Rows[0].Examples[0]
			if ex.Proxy != id.String() || ex.Path != "/api/items" || ex.PrimaryBody != "v1" || ex.MirrorBody != "v2" ||
				len(ex.Headers) != 1 || ex.Headers[0].Primary != redact.Redacted || ex.Headers[0].Mirror != redact.Redacted {
				t.Errorf("example %+v", ex)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the controller shows no example after 30 s: %+v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
