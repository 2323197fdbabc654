package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skeinmesh/skein/demo"
	"github.com/skeinmesh/skein/internal/netns"
	"github.com/skeinmesh/skein/internal/pki"
	"github.com/skeinmesh/skein/internal/tap"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

// tapManifest is the demo with web opted in to tapped bodies (redacting
// the JSON field password and the header x-secret), a meshed witness
// that sends requests the test knows, and an unmeshed outsider that
// tries the proxies' tap API itself.
func tapManifest(t *testing.T) string {
	t.Helper()
	web := "  name: web\n  namespace: demo\n  labels: {app: web}\n"
	if !strings.Contains(string(demo.Manifests), web) {
		t.Fatalf("the demo's manifests no longer hold web's Workload as %q", web)
	}
	annotated := web + `  annotations:
    skein.io/tap-body-bytes: "4096"
    skein.io/tap-redact-json-fields: "password, token"
    skein.io/tap-redact-headers: "x-secret"
`
	return strings.Replace(string(demo.Manifests), web, annotated, 1) + `
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: witness, namespace: demo, labels: {app: witness}}
spec:
  serviceAccountName: witness
  command: [testapp]
---
apiVersion: skein.io/v1alpha1
kind: Workload
metadata: {name: outsider, namespace: demo, labels: {app: outsider}}
spec:
  serviceAccountName: outsider
  inject: false
  command: [testapp]
`
}

const (
	witnessSecretHeader = "x-secret-value-7f3a"
	witnessBearer       = "Bearer witness-token-91c2"
	witnessPassword     = "hunter2-e7d1"
)

// witnessBody is the JSON a witness POSTs; tapped with web's opt-in the
// password's value must read [REDACTED] and the rest match byte for byte.
func witnessBody(i int) (sent, redacted string) {
	sent = fmt.Sprintf(`{"choice":"taco","password":%q,"note":"witness-body-%d"}`, witnessPassword, i)
	return sent, strings.Replace(sent, strconv.Quote(witnessPassword), strconv.Quote(tap.Redacted), 1)
}

// tapRun is a `skein tap` (or top) running in the background.
type tapRun struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startSkein(t *testing.T, args ...string) *tapRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &tapRun{out: &syncBuffer{}, cancel: cancel, done: make(chan struct{})}
	r.cmd = exec.CommandContext(ctx, filepath.Join(binDir, "skein"), args...)
	r.cmd.Stdout = r.out
	var stderr syncBuffer
	r.cmd.Stderr = &stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.err = r.cmd.Wait()
		if r.err != nil && ctx.Err() == nil {
			r.err = fmt.Errorf("%v: %s", r.err, stderr.String())
		} else {
			r.err = nil
		}
		close(r.done)
	}()
	t.Cleanup(r.stop)
	return r
}

// stop ends the command and returns what it printed.
func (r *tapRun) stop() {
	r.cancel()
	<-r.done
}

// events decodes the -o json lines printed so far.
func (r *tapRun) events(t *testing.T) []tap.Event {
	t.Helper()
	var out []tap.Event
	for _, l := range strings.Split(r.out.String(), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var e tap.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			continue // a line cut by stop
		}
		out = append(out, e)
	}
	return out
}

// waitEvents waits until the tap printed an event matching ok (the
// proxies' streams are open).
func (r *tapRun) waitEvents(t *testing.T, what string, ok func(tap.Event) bool) {
	t.Helper()
	r.waitUntil(t, what, func(events []tap.Event) bool {
		for _, e := range events {
			if ok(e) {
				return true
			}
		}
		return false
	})
}

// waitUntil waits until the events printed so far satisfy done; an error
// event fails the test.
func (r *tapRun) waitUntil(t *testing.T, what string, done func([]tap.Event) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		events := r.events(t)
		for _, e := range events {
			if e.Kind == tap.KindError {
				t.Fatalf("tap error: %+v", e)
			}
		}
		if done(events) {
			return
		}
		select {
		case <-r.done:
			t.Fatalf("skein tap ended before %s: %v\n%s", what, r.err, r.out.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("no %s within 30 s:\n%s", what, tail(r.out.String(), 20))
}

func isRequest(e tap.Event) bool { return e.Kind == tap.KindRequest }

func TestTap(t *testing.T) {
	requireRoot(t)
	m := startUpMesh(t, tapManifest(t))
	api := m.api()
	witness := podHTTP(t, m.pod(t, "demo-witness-0"))
	webURL := "http://web.demo.svc.cluster.local:8080"
	td := "cluster.local"
	// The mesh is up before its bot's traffic flows: wait for web to answer.
	if !waitFor(60*time.Second, func() bool {
		code, _, err := getBody(witness, webURL+"/api/list")
		return err == nil && code == 200
	}) {
		t.Fatal("web never answered the witness")
	}
	var webAddr string // web-0's address, from its events

	t.Run("events match what the witness sent, bodies redacted", func(t *testing.T) {
		r := startSkein(t, "tap", "deploy/web", "-n", "demo", "--path", "/api/vote", "-o", "json", "--api", api)
		r.waitEvents(t, "a bot request", isRequest)
		const n = 5
		for i := range n {
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/vote?choice=taco&witness=%d", webURL, i), nil)
			req.Header.Set("x-witness", strconv.Itoa(i))
			req.Header.Set("x-secret", witnessSecretHeader)
			req.Header.Set("Authorization", witnessBearer)
			mustDo(t, witness, req, 200)
			sent, _ := witnessBody(i)
			post, _ := http.NewRequest("POST", fmt.Sprintf("%s/api/vote?witness-post=%d", webURL, i), strings.NewReader(sent))
			post.Header.Set("Content-Type", "application/json")
			mustDo(t, witness, post, 0)
		}
		r.waitUntil(t, "the last witness POST's end", func(events []tap.Event) bool { return lastPostEnded(events, n-1) })
		r.stop()
		out := r.out.String()
		for _, secret := range []string{witnessSecretHeader, "witness-token-91c2", witnessPassword} {
			if strings.Contains(out, secret) {
				t.Errorf("the tap output holds the redacted value %q", secret)
			}
		}
		events := r.events(t)
		for i := range n {
			get := findRequest(events, fmt.Sprintf("witness=%d", i))
			if get == nil {
				t.Errorf("witness GET %d not tapped", i)
				continue
			}
			wantPath := fmt.Sprintf("/api/vote?choice=taco&witness=%d", i)
			if get.Method != "GET" || get.Path != wantPath || get.Direction != "inbound" ||
				get.Source.Identity != "spiffe://"+td+"/ns/demo/sa/witness" || get.Source.Workload != "witness" ||
				get.Dest.Identity != "spiffe://"+td+"/ns/demo/sa/web" || get.Dest.Workload != "web" {
				t.Errorf("witness GET %d tapped as %+v", i, *get)
			}
			if v := header(get.Headers, "x-witness"); v != strconv.Itoa(i) {
				t.Errorf("witness GET %d: x-witness %q", i, v)
			}
			for _, h := range []string{"x-secret", "authorization"} {
				if v := header(get.Headers, h); v != tap.Redacted {
					t.Errorf("witness GET %d: header %s is %q, want %s", i, h, v, tap.Redacted)
				}
			}
			if end := findKind(events, get, tap.KindEnd); end == nil || end.Status != 200 {
				t.Errorf("witness GET %d: end %+v, want status 200", i, end)
			} else if end.Body == "" || !strings.Contains(end.Body, `"voted"`) {
				t.Errorf("witness GET %d: response body %q, want web's answer (web opted in)", i, end.Body)
			}
			webAddr = get.Dest.Address

			post := findRequest(events, fmt.Sprintf("witness-post=%d", i))
			if post == nil {
				t.Errorf("witness POST %d not tapped", i)
				continue
			}
			_, want := witnessBody(i)
			if post.Method != "POST" || post.Body != want {
				t.Errorf("witness POST %d: %s with body %q, want POST with %q", i, post.Method, post.Body, want)
			}
		}
	})

	t.Run("without the opt-in no body byte appears", func(t *testing.T) {
		r := startSkein(t, "tap", "deploy/witness", "-n", "demo", "-o", "json", "--api", api)
		time.Sleep(3 * time.Second) // the witness has no traffic of its own to wait for
		sent, _ := witnessBody(99)
		post, _ := http.NewRequest("POST", webURL+"/api/vote?witness-post=99", strings.NewReader(sent))
		mustDo(t, witness, post, 0)
		r.waitEvents(t, "the witness's POST", func(e tap.Event) bool { return e.Kind == tap.KindEnd })
		r.stop()
		if out := r.out.String(); strings.Contains(out, "witness-body") || strings.Contains(out, `"body"`) {
			t.Errorf("body bytes in the tap of a workload that did not opt in:\n%s", out)
		}
		if findRequest(r.events(t), "witness-post=99") == nil {
			t.Errorf("the witness's POST was not tapped:\n%s", r.out.String())
		}
	})

	t.Run("filters exclude what they should", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			ok   func(tap.Event) bool
		}{
			{[]string{"--path", "/api/list"}, func(e tap.Event) bool { return strings.HasPrefix(e.Path, "/api/list") }},
			{[]string{"--method", "POST"}, func(e tap.Event) bool { return e.Method == "POST" }},
			{[]string{"--to", "svc/voting"}, func(e tap.Event) bool {
				return e.Direction == "outbound" && e.Dest.Workload == "voting"
			}},
		} {
			r := startSkein(t, append([]string{"tap", "deploy/web", "-n", "demo", "-o", "json", "--api", api}, tc.args...)...)
			if tc.args[0] == "--method" {
				time.Sleep(3 * time.Second)
				post, _ := http.NewRequest("POST", webURL+"/api/vote?witness-post=filter", strings.NewReader("{}"))
				mustDo(t, witness, post, 0)
			}
			r.waitEvents(t, "a request for "+strings.Join(tc.args, " "), isRequest)
			time.Sleep(3 * time.Second)
			r.stop()
			n := 0
			for _, e := range r.events(t) {
				if e.Kind == tap.KindRequest {
					n++
					if !tc.ok(e) {
						t.Errorf("%v let through %s %s %s -> %s", tc.args, e.Direction, e.Method, e.Path, e.Dest.Workload)
					}
				}
			}
			t.Logf("%v: %d requests, all matching", tc.args, n)
		}
	})

	t.Run("the cap holds and drops are counted", func(t *testing.T) {
		const capRPS = 5
		r := startSkein(t, "tap", "deploy/web", "-n", "demo", "--max-rps", strconv.Itoa(capRPS), "-o", "json", "--api", api)
		r.waitEvents(t, "a request", isRequest)
		start := time.Now()
		time.Sleep(8 * time.Second)
		r.stop()
		elapsed := time.Since(start)
		var events, dropped uint64
		for _, e := range r.events(t) {
			switch e.Kind {
			case tap.KindRequest, tap.KindResponse, tap.KindEnd:
				events++
			case tap.KindDropped:
				dropped += e.Dropped
			}
		}
		// From the first event on: the cap a second, one second's more
		// for the second the first event opened and one for the last.
		limit := uint64(capRPS * (math.Ceil(elapsed.Seconds()) + 2))
		t.Logf("%d events and %d dropped in %s at a cap of %d a second", events, dropped, elapsed.Round(time.Millisecond), capRPS)
		if events > limit {
			t.Errorf("%d events in %s, over the cap of %d a second (limit %d)", events, elapsed, capRPS, limit)
		}
		if dropped == 0 {
			t.Error("no drops reported though web's traffic is well over the cap")
		}
	})

	t.Run("top counts the demo's paths", func(t *testing.T) {
		const window = 30 * time.Second
		start := time.Now()
		out, err := skein(context.Background(), "top", "deploy/web", "-n", "demo", "--path", "/api", "-o", "json", "--duration", window.String(), "--api", api)
		end := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		var resp struct {
			Rows []struct {
				Source, Destination, Method, Path string
				Count                             float64
			} `json:"rows"`
			Dropped uint64 `json:"dropped"`
		}
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		sent := botRequestsBetween(t, filepath.Join(m.stateDir, "logs", "vote-bot-0.log"), start, end)
		counts := map[string]float64{}
		for _, r := range resp.Rows {
			if r.Source == "demo/vote-bot" && r.Destination == "demo/web" {
				counts[r.Method+" "+r.Path] += r.Count
			}
		}
		t.Logf("top over %s: %v (dropped %d); the bot sent %.0f", end.Sub(start).Round(time.Millisecond), counts, resp.Dropped, sent)
		// The bot's cycle: 10 votes, 1 list, 1 leaderboard.
		for path, share := range map[string]float64{"GET /api/vote": 10.0 / 12, "GET /api/list": 1.0 / 12, "GET /api/leaderboard": 1.0 / 12} {
			want := sent * share
			// ±10%, and a request at each end of the window for the
			// small counts (a request in flight as top starts or stops).
			if got := counts[path]; math.Abs(got-want) > 0.1*want+2 {
				t.Errorf("top counts %.0f %s, the bot sent %.1f (±10%%)", got, path, want)
			}
		}
		if resp.Dropped != 0 {
			t.Errorf("top's tap dropped %d events under the cap", resp.Dropped)
		}
	})

	t.Run("only the controller's identity may open a proxy's tap", func(t *testing.T) {
		if webAddr == "" {
			t.Skip("web's address unknown: the first subtest failed")
		}
		host, _, _ := net.SplitHostPort(webAddr)
		target := net.JoinHostPort(host, "4191")
		outsider := m.pod(t, "demo-outsider-0")
		idDir := filepath.Join(m.stateDir, "identity")
		observe := func(cert *tls.Certificate) error {
			cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
			if cert != nil {
				cfg.Certificates = []tls.Certificate{*cert}
			}
			return tapObserveOnce(t, outsider, target, cfg)
		}
		if err := observe(nil); err == nil {
			t.Error("a client without a certificate opened web's tap")
		}
		workload := mintLeaf(t, idDir, "spiffe://"+td+"/ns/demo/sa/witness")
		if err := observe(&workload); err == nil {
			t.Error("a workload identity opened web's tap")
		}
		// The control: the same client with the controller's identity.
		controller := mintLeaf(t, idDir, "spiffe://"+td+"/skein/controller")
		if err := observe(&controller); err != nil {
			t.Errorf("the controller's identity could not open web's tap: %v", err)
		}
	})

	if !m.logsMention(t, "tap session started", "unix:uid=0") {
		t.Error("the controller's log has no tap session with who asked")
	}
}

// tapObserveOnce opens web's Tap.Observe from h and waits for one event.
func tapObserveOnce(t *testing.T, h *netns.Host, target string, cfg *tls.Config) error {
	t.Helper()
	dial := dialFrom(t, h)
	cc, err := grpc.NewClient("passthrough:///"+target, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "tcp", addr) }))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	stream, err := tappb.NewTapClient(cc).Observe(ctx, &tappb.ObserveRequest{})
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

// mintLeaf signs a certificate for id with the mesh's own issuer (its
// files in the state directory): a chain the proxy trusts, so that only
// the identity in it decides.
func mintLeaf(t *testing.T, idDir, id string) tls.Certificate {
	t.Helper()
	certs, err := pki.ParseCertificates([]byte(mustRead(t, filepath.Join(idDir, "tls.crt"))))
	if err != nil {
		t.Fatal(err)
	}
	issuerKey, err := pki.ParsePrivateKey([]byte(mustRead(t, filepath.Join(idDir, "tls.key"))))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.GenerateKey()
	serial, _ := pki.NewSerial()
	u, _ := url.Parse(id)
	der, err := x509.CreateCertificate(nil, &x509.Certificate{
		SerialNumber: serial, URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}, certs[0], &key.PublicKey, issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{der}
	for _, c := range certs {
		chain = append(chain, c.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key}
}

func mustDo(t *testing.T, c *http.Client, req *http.Request, wantStatus int) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if wantStatus != 0 && resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: %d %s", req.Method, req.URL, resp.StatusCode, b.String())
	}
}

func findRequest(events []tap.Event, pathPart string) *tap.Event {
	for i, e := range events {
		if e.Kind == tap.KindRequest && strings.Contains(e.Path, pathPart) {
			return &events[i]
		}
	}
	return nil
}

func findKind(events []tap.Event, req *tap.Event, kind string) *tap.Event {
	for i, e := range events {
		if e.Kind == kind && e.Proxy == req.Proxy && e.Stream == req.Stream {
			return &events[i]
		}
	}
	return nil
}

func lastPostEnded(events []tap.Event, i int) bool {
	req := findRequest(events, fmt.Sprintf("witness-post=%d", i))
	return req != nil && findKind(events, req, tap.KindEnd) != nil
}

func header(hs []tap.Header, name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// botRequestsBetween is how many requests the demo's bot sent between
// from and to, from its reports ("traffic sent", one per 10 s), each
// prorated by how much of it falls in the interval.
func botRequestsBetween(t *testing.T, logPath string, from, to time.Time) float64 {
	t.Helper()
	deadline := time.Now().Add(25 * time.Second)
	for {
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		var total float64
		covered := false
		for _, l := range strings.Split(string(b), "\n") {
			m := botReport.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			at, err1 := time.Parse(time.RFC3339Nano, m[1])
			w, err2 := time.ParseDuration(m[2])
			n, err3 := strconv.Atoi(m[3])
			if err1 != nil || err2 != nil || err3 != nil || w <= 0 {
				t.Fatalf("bot report %q", l)
			}
			lo, hi := maxTime(at.Add(-w), from), minTime(at, to)
			if hi.After(lo) {
				total += float64(n) * hi.Sub(lo).Seconds() / w.Seconds()
			}
			if !at.Before(to) {
				covered = true
			}
		}
		if covered {
			return total
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report of the bot's covers %s", to.Format(time.RFC3339))
		}
		time.Sleep(time.Second)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
