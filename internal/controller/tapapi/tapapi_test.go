package tapapi_test

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/controller/tapapi"
	"github.com/skeinmesh/skein/internal/model"
	"github.com/skeinmesh/skein/internal/tap"
)

// demoMesh: web-0 and web-1 (meshed, behind service web), db-0 (meshed),
// legacy-0 (not meshed), in namespace demo on 127.0.0.2-5.
func demoMesh(nsAnn map[string]string, web0Ann map[string]string) *model.Model {
	m := model.New(model.WithTrustDomain(trustDomain))
	m.Writer("test").Replace(model.Snapshot{
		Namespaces: []model.Namespace{{Name: "demo", Annotations: nsAnn}},
		Services: []model.Service{{Namespace: "demo", Name: "web", Selector: map[string]string{"app": "web"},
			Ports: []model.ServicePort{{Port: 8080}}, ClusterIPs: []netipAddr{mustAddr("10.96.0.10")}}},
		Instances: []model.Instance{
			instance("demo", "web-0", "web", "127.0.0.2", true, web0Ann, map[string]string{"app": "web"}),
			instance("demo", "web-1", "web", "127.0.0.3", true, nil, map[string]string{"app": "web"}),
			instance("demo", "db-0", "db", "127.0.0.4", true, nil, map[string]string{"app": "db"}),
			instance("demo", "legacy-0", "legacy", "127.0.0.5", false, nil, nil),
		},
	})
	return m
}

func query(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q
}

func TestTapMergesTheStreamsOfEveryProxy(t *testing.T) {
	p := newTestPKI(t)
	port := freePort(t, "127.0.0.2", "127.0.0.3")
	web0 := startFakeProxy(t, p, "127.0.0.2", port, workloadID("demo", "web"),
		requestEvent(1, 0, "POST", "/api/vote"), responseEvent(1, 200, 1500*time.Microsecond), endEvent(1, -1, 2*time.Millisecond))
	web1 := startFakeProxy(t, p, "127.0.0.3", port, workloadID("demo", "web"),
		requestEvent(7, 3, "GET", "/api/list"), endEvent(7, 14, 5*time.Millisecond))
	srv := tapServer(t, p, demoMesh(nil, nil), port, nil)

	s := openTap(t, srv, query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/web",
		tap.ParamMethod, "POST", tap.ParamPath, "/api", tap.ParamAuthority, "web.demo:8080", tap.ParamRoute, "demo/votes", tap.ParamMaxRPS, "7"))
	events := s.next(t, 6) // 3 + drop report + 2
	byProxy := map[string][]tap.Event{}
	for _, e := range events {
		byProxy[e.Proxy] = append(byProxy[e.Proxy], e)
	}
	w0, w1 := byProxy["demo/web-0"], byProxy["demo/web-1"]
	if len(w0) != 3 || len(w1) != 3 {
		t.Fatalf("events by proxy: %+v", byProxy)
	}
	req := w0[0]
	if req.Kind != tap.KindRequest || req.Method != "POST" || req.Path != "/api/vote" || req.Stream != 1 || req.Route != "demo/votes" ||
		req.Source.Identity != workloadID("demo", "db") || req.Source.Workload != "db" || req.Source.Pod != "db-0" || req.Source.Namespace != "demo" ||
		req.Dest.Service != "web" || req.Direction != "inbound" || len(req.Headers) != 2 || req.Headers[1].Value != tap.Redacted {
		t.Errorf("request event: %+v", req)
	}
	if rsp := w0[1]; rsp.Kind != tap.KindResponse || rsp.Status != 200 || rsp.LatencyMs != 1.5 {
		t.Errorf("response event: %+v", rsp)
	}
	if end := w0[2]; end.Kind != tap.KindEnd || end.GRPCStatus != nil || end.DurationMs != 2 || end.RequestBytes != 12 || end.ResponseBytes != 34 || end.Status != 200 {
		t.Errorf("end event: %+v", end)
	}
	if d := w1[0]; d.Kind != tap.KindDropped || d.Dropped != 3 {
		t.Errorf("web-1's drops: %+v", d)
	}
	if end := w1[2]; end.GRPCStatus == nil || *end.GRPCStatus != 14 {
		t.Errorf("web-1's end: %+v", end)
	}
	for _, f := range []*fakeProxy{web0, web1} {
		r := f.lastRequest(t)
		fl := r.GetFilter()
		if r.GetMaxEventsPerSecond() != 7 || fl.GetMethod() != "POST" || fl.GetPathPrefix() != "/api" || fl.GetAuthority() != "web.demo:8080" ||
			fl.GetRoute() != "demo/votes" || fl.GetDirection() != "" || len(fl.GetPeerAddresses()) != 0 {
			t.Errorf("observe request: %v", r)
		}
	}
}

func TestTapResolvesResourcesToMeshedPods(t *testing.T) {
	p := newTestPKI(t)
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
	port := freePort(t, ips...)
	proxies := map[string]*fakeProxy{
		"web-0": startFakeProxy(t, p, ips[0], port, workloadID("demo", "web")),
		"web-1": startFakeProxy(t, p, ips[1], port, workloadID("demo", "web")),
		"db-0":  startFakeProxy(t, p, ips[2], port, workloadID("demo", "db")),
		// legacy-0 is not meshed: a server there must never be called.
		"legacy-0": startFakeProxy(t, p, ips[3], port, workloadID("demo", "legacy")),
	}
	srv := tapServer(t, p, demoMesh(nil, nil), port, nil)
	for _, tc := range []struct {
		ns, resource string
		want         []string
	}{
		{"demo", "deploy/web", []string{"web-0", "web-1"}},
		{"demo", "workloads/db", []string{"db-0"}},
		{"demo", "po/web-1", []string{"web-1"}},
		{"demo", "svc/web", []string{"web-0", "web-1"}},
		{"", "ns/demo", []string{"db-0", "web-0", "web-1"}},
	} {
		s := openTap(t, srv, query(tap.ParamNamespace, tc.ns, tap.ParamResource, tc.resource))
		for _, name := range tc.want {
			waitFor(t, proxies[name].opened, tc.resource+" tapping "+name)
		}
		s.close()
		for _, name := range tc.want {
			waitFor(t, proxies[name].ended, tc.resource+" ending "+name)
		}
		for name, f := range proxies {
			if len(f.opened) > 0 && !slices.Contains(tc.want, name) {
				t.Errorf("%s tapped %s, want only %v", tc.resource, name, tc.want)
				<-f.opened
			}
		}
	}

	// --to becomes an outbound peer filter: the service's cluster IP and
	// its pods' addresses.
	s := openTap(t, srv, query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/db", tap.ParamTo, "svc/web"))
	waitFor(t, proxies["db-0"].opened, "tap with --to")
	fl := proxies["db-0"].lastRequest(t).GetFilter()
	if fl.GetDirection() != "outbound" || !slices.Equal(fl.GetPeerAddresses(), []string{"10.96.0.10", "127.0.0.2", "127.0.0.3"}) {
		t.Errorf("--to svc/web filter: %v", fl)
	}
	s.close()
}

func TestTapEndsEveryProxyStreamWhenTheClientLeaves(t *testing.T) {
	p := newTestPKI(t)
	port := freePort(t, "127.0.0.2", "127.0.0.3")
	web0 := startFakeProxy(t, p, "127.0.0.2", port, workloadID("demo", "web"), requestEvent(1, 0, "GET", "/"))
	web1 := startFakeProxy(t, p, "127.0.0.3", port, workloadID("demo", "web"), requestEvent(2, 0, "GET", "/"))
	srv := tapServer(t, p, demoMesh(nil, nil), port, nil)
	s := openTap(t, srv, query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/web"))
	s.next(t, 2)
	if len(web0.ended)+len(web1.ended) != 0 {
		t.Fatal("a proxy stream ended while the client was there")
	}
	s.close()
	waitFor(t, web0.ended, "web-0's stream to end")
	waitFor(t, web1.ended, "web-1's stream to end")
}

func TestTapAsksForBodiesOnlyWhereTheWorkloadOptedIn(t *testing.T) {
	p := newTestPKI(t)
	port := freePort(t, "127.0.0.2", "127.0.0.3")
	web0 := startFakeProxy(t, p, "127.0.0.2", port, workloadID("demo", "web"))
	web1 := startFakeProxy(t, p, "127.0.0.3", port, workloadID("demo", "web"))
	tapBoth := func(t *testing.T, m *model.Model) *tapStream {
		srv := tapServer(t, p, m, port, nil)
		s := openTap(t, srv, query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/web"))
		waitFor(t, web0.opened, "web-0")
		waitFor(t, web1.opened, "web-1")
		return s
	}

	t.Run("no annotation, no bodies", func(t *testing.T) {
		s := tapBoth(t, demoMesh(nil, map[string]string{tapapi.RedactHeadersAnnotation: "x-user, x-secret"}))
		r0, r1 := web0.lastRequest(t), web1.lastRequest(t)
		if r0.GetBodyBytes() != 0 || r1.GetBodyBytes() != 0 || len(r0.GetRedactJsonFields()) != 0 {
			t.Errorf("bodies asked without an opt-in: %v / %v", r0, r1)
		}
		if !slices.Equal(r0.GetRedactHeaders(), []string{"x-user", "x-secret"}) || len(r1.GetRedactHeaders()) != 0 {
			t.Errorf("header redactions: %v / %v", r0.GetRedactHeaders(), r1.GetRedactHeaders())
		}
		s.close()
	})
	t.Run("the workload opted in", func(t *testing.T) {
		s := tapBoth(t, demoMesh(map[string]string{tapapi.RedactJSONFieldsAnnotation: "ssn"}, map[string]string{
			tapapi.BodyBytesAnnotation:        "4096",
			tapapi.RedactJSONFieldsAnnotation: "password, token",
			tapapi.RedactPatternsAnnotation:   "\\d{4}-\\d{4}\nsecret-[a-z]+\n",
		}))
		r0, r1 := web0.lastRequest(t), web1.lastRequest(t)
		if r0.GetBodyBytes() != 4096 || !slices.Equal(r0.GetRedactJsonFields(), []string{"ssn", "password", "token"}) ||
			!slices.Equal(r0.GetRedactPatterns(), []string{`\d{4}-\d{4}`, "secret-[a-z]+"}) {
			t.Errorf("web-0 (opted in): %v", r0)
		}
		if r1.GetBodyBytes() != 0 {
			t.Errorf("web-1 did not opt in but was asked for %d body bytes", r1.GetBodyBytes())
		}
		s.close()
	})
	t.Run("the namespace opted in, one workload out", func(t *testing.T) {
		s := tapBoth(t, demoMesh(map[string]string{tapapi.BodyBytesAnnotation: "100"}, map[string]string{tapapi.BodyBytesAnnotation: "0"}))
		if n := web0.lastRequest(t).GetBodyBytes(); n != 0 {
			t.Errorf("web-0 opted out but was asked for %d bytes", n)
		}
		if n := web1.lastRequest(t).GetBodyBytes(); n != 100 {
			t.Errorf("web-1 (namespace opt-in) asked for %d bytes, want 100", n)
		}
		s.close()
	})
	for _, bad := range []map[string]string{
		{tapapi.BodyBytesAnnotation: "1000000"},
		{tapapi.BodyBytesAnnotation: "lots"},
		{tapapi.BodyBytesAnnotation: "10", tapapi.RedactPatternsAnnotation: "(unclosed"},
	} {
		t.Run("a bad annotation turns bodies off", func(t *testing.T) {
			s := tapBoth(t, demoMesh(nil, bad))
			if n := web0.lastRequest(t).GetBodyBytes(); n != 0 {
				t.Errorf("%v: asked for %d bytes", bad, n)
			}
			e := s.next(t, 1)[0]
			if e.Kind != tap.KindError || e.Proxy != "demo/web-0" || !strings.Contains(e.Error, "bodies off") {
				t.Errorf("%v: event %+v, want an error event saying bodies are off", bad, e)
			}
			s.close()
		})
	}
}

func TestTapRefusesAProxyWithTheWrongIdentity(t *testing.T) {
	p := newTestPKI(t)
	port := freePort(t, "127.0.0.2", "127.0.0.3")
	startFakeProxy(t, p, "127.0.0.2", port, workloadID("demo", "web"), requestEvent(1, 0, "GET", "/"))
	impostor := startFakeProxy(t, p, "127.0.0.3", port, workloadID("demo", "other"), requestEvent(2, 0, "GET", "/stolen"))
	srv := tapServer(t, p, demoMesh(nil, nil), port, nil)
	s := openTap(t, srv, query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/web"))
	events := s.next(t, 2)
	var sawError bool
	for _, e := range events {
		switch {
		case e.Proxy == "demo/web-1" && e.Kind == tap.KindError:
			sawError = true
		case e.Proxy == "demo/web-1":
			t.Errorf("an event from the impostor: %+v", e)
		}
	}
	if !sawError {
		t.Errorf("no error event for the impostor: %+v", events)
	}
	if len(impostor.opened) != 0 {
		t.Error("the impostor was asked to tap")
	}
}

func TestTapParameterErrors(t *testing.T) {
	p := newTestPKI(t)
	srv := tapServer(t, p, demoMesh(nil, nil), 1, func(c *tapapi.Config) { c.MaxProxies = 2 })
	for _, tc := range []struct {
		q          url.Values
		status     int
		mentioning string
	}{
		{query(tap.ParamNamespace, "demo"), 400, "resource"},
		{query(tap.ParamNamespace, "demo", tap.ParamResource, "web"), 400, "resource"},
		{query(tap.ParamNamespace, "demo", tap.ParamResource, "cronjob/web"), 400, "resource"},
		{query(tap.ParamResource, "deploy/web"), 400, "namespace"},
		{query(tap.ParamNamespace, "Demo!", tap.ParamResource, "deploy/web"), 400, "namespace"},
		{query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/web", tap.ParamMaxRPS, "0"), 400, "maxRps"},
		{query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/web", tap.ParamMaxRPS, "1001"), 400, "maxRps"},
		{query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/web", tap.ParamPath, "api"), 400, "path"},
		{query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/web", tap.ParamMethod, "GE T"), 400, "method"},
		{query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/web", tap.ParamTo, "nowhere"), 400, "to"},
		{query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/web", tap.ParamAuthority, "a b"), 400, "authority"},
		{query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/nope"), 404, "no workload nope"},
		{query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/legacy"), 404, "no meshed instances"},
		{query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/web", tap.ParamTo, "svc/nope"), 404, "no service nope"},
		{query(tap.ParamResource, "ns/demo"), 400, "selects 3 proxies"},
	} {
		resp, err := http.Get(srv.URL + tap.APIPath + "?" + tc.q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.mentioning) {
			t.Errorf("%s: %d %s, want %d mentioning %q", tc.q.Encode(), resp.StatusCode, body, tc.status, tc.mentioning)
		}
	}
	resp, _ := http.Get(srv.URL + tap.APIPath + "?resource=ns/demo&resource=ns/other")
	if resp.StatusCode != 400 {
		t.Errorf("a repeated parameter: %s", resp.Status)
	}
	resp.Body.Close()
}

func TestTapBoundsTheSessions(t *testing.T) {
	p := newTestPKI(t)
	port := freePort(t, "127.0.0.4")
	db := startFakeProxy(t, p, "127.0.0.4", port, workloadID("demo", "db"))
	srv := tapServer(t, p, demoMesh(nil, nil), port, func(c *tapapi.Config) { c.MaxSessions = 1 })
	q := query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/db")
	s := openTap(t, srv, q)
	waitFor(t, db.opened, "the first session")
	resp, err := http.Get(srv.URL + tap.APIPath + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a second session: %s, want 503", resp.Status)
	}
	s.close()
	waitFor(t, db.ended, "the first session to end")
}

func TestTapFollowsProxiesJoiningAndLeaving(t *testing.T) {
	p := newTestPKI(t)
	port := freePort(t, "127.0.0.2", "127.0.0.3")
	web0 := startFakeProxy(t, p, "127.0.0.2", port, workloadID("demo", "web"))
	web1 := startFakeProxy(t, p, "127.0.0.3", port, workloadID("demo", "web"))
	m := model.New(model.WithTrustDomain(trustDomain))
	w := m.Writer("test")
	w.SetInstance(instance("demo", "web-0", "web", "127.0.0.2", true, nil, nil))
	srv := tapServer(t, p, m, port, func(c *tapapi.Config) { c.Resync = 20 * time.Millisecond })
	s := openTap(t, srv, query(tap.ParamNamespace, "demo", tap.ParamResource, "deploy/web"))
	waitFor(t, web0.opened, "web-0")

	w.SetInstance(instance("demo", "web-1", "web", "127.0.0.3", true, nil, nil))
	waitFor(t, web1.opened, "web-1, which joined, to be tapped")
	w.DeleteInstance("demo", "web-0")
	waitFor(t, web0.ended, "web-0, which left, to be stopped")
	if len(web1.ended) != 0 {
		t.Error("web-1's stream ended though it stayed")
	}
	// A proxy is tapped once while it stays.
	w.SetInstance(instance("demo", "web-1", "web", "127.0.0.3", true, nil, map[string]string{"v": "2"}))
	time.Sleep(10 * 20 * time.Millisecond) // several resyncs (a delay, not a timing assert)
	s.close()
	waitFor(t, web1.ended, "web-1's stream to end with the session")
	if n := len(web1.opened); n != 0 {
		t.Errorf("web-1 tapped %d more times while it stayed", n)
	}
}
