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
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/controller"
	ctlidentity "github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/metricsapi"
	"github.com/skeinmesh/skein/internal/proxy/mirror"
	"github.com/skeinmesh/skein/internal/proxy/redact"
	"github.com/skeinmesh/skein/internal/testenv"
	mirrorpb "github.com/skeinmesh/skein/proto/mirror"
)

// issue 13's "a mirror that returns a different body for 1 request in 10
// shows ~10% mismatches in skein diff with an example": the mirror layer of
// a real outbound stack counts, a real Prometheus scrapes the proxy, the
// proxy reports its examples to a real controller over its mesh-TLS gRPC
// connection (MirrorDiffs.Report), and the controller's metrics API (what
// `skein diff -o json` prints) shows both.
func TestSkeinDiffShowsTheMirrorsMismatchShareAndAnExample(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a controller and Prometheus")
	}
	testenv.PrometheusBinary(t)

	// One answer in ten differs, in its body and a credential field.
	var calls atomic.Int32
	primary := listen(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("set-cookie", "session=primary-secret")
		io.WriteString(w, "v1")
	}))
	shadow := listen(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%10 == 0 {
			w.Header().Set("set-cookie", "session=mirror-secret")
			io.WriteString(w, "v2")
			return
		}
		w.Header().Set("set-cookie", "session=primary-secret")
		io.WriteString(w, "v1")
	}))
	p := newMirrorProxy(t, primary, shadow, mirrorRule(100, "set-cookie"), mirror.Config{})
	scraped := httptest.NewServer(p.reg.Handler())
	t.Cleanup(scraped.Close)
	promURL := testenv.StartPrometheus(t, []string{strings.TrimPrefix(scraped.URL, "http://")})

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
	ctx, cancel := context.WithCancel(context.Background())
	cfg := controller.Default()
	cfg.ManifestsDir = manifests
	cfg.IdentityDir = idDir
	cfg.JoinTokenKey = filepath.Join(idDir, ctlidentity.JoinTokenKeyFile)
	cfg.GRPCAddr, cfg.AdminAddr, cfg.APIAddr = freeLoopbackAddr(t), freeLoopbackAddr(t), freeLoopbackAddr(t)
	cfg.PrometheusURL = promURL
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

	go cp.identity.Run(ctx)
	go p.ex.Report(ctx, mirrorpb.NewMirrorDiffsClient(cp.conn), 50*time.Millisecond, quietLog())

	// Batches of 20 requests (2 mismatches each) until Prometheus has seen
	// at least 200 compared over the API's one-minute window.
	deadline := time.Now().Add(60 * time.Second)
	for {
		for range 20 {
			if status, body, _ := p.send(t, "GET", "", nil); status != 200 || body != "v1" {
				t.Fatalf("client got %d %q, want the primary's answer", status, body)
			}
		}
		row, ok := diffRow(t, cfg.APIAddr)
		if ok && row.Match+row.Mismatch >= 200 && len(row.Examples) > 0 {
			t.Logf("skein diff: %d match, %d mismatch, rate %.3f, %d examples", row.Match, row.Mismatch, *row.MismatchRate, len(row.Examples))
			if r := *row.MismatchRate; r < 0.07 || r > 0.13 {
				t.Errorf("mismatch rate %.3f, want about 0.10 (the mirror differs on 1 request in 10)", r)
			}
			ex := row.Examples[0]
			if ex.Proxy != id.String() || ex.Path != "/api/items" || ex.PrimaryBody != "v1" || ex.MirrorBody != "v2" || !ex.BodyDiffers ||
				len(ex.Headers) != 1 || ex.Headers[0].Primary != redact.Redacted || ex.Headers[0].Mirror != redact.Redacted {
				t.Errorf("example %+v", ex)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s the controller shows %+v", row)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// diffRow asks the controller's metrics API what `skein diff route
// web-mirror -n test -o json` shows.
func diffRow(t *testing.T, apiAddr string) (metricsapi.DiffRow, bool) {
	t.Helper()
	resp, err := http.Get("http://" + apiAddr + "/api/v1/diff?namespace=test&route=web-mirror")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got metricsapi.DiffResponse
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got.Rows) != 1 || got.Rows[0].MismatchRate == nil {
		return metricsapi.DiffRow{}, false
	}
	return got.Rows[0], true
}
