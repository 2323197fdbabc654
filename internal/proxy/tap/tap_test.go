package tap

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/proxyerror"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// app is the terminal of a tapped stack: it reads the request body to the
// end, keeps it, and answers with its response.
type app struct {
	mu       sync.Mutex
	got      [][]byte
	status   int
	header   stack.Header
	body     []byte
	trailers stack.Header
	route    string
	endpoint discovery.Endpoint
	serverID string
}

func (a *app) Serve(_ context.Context, req *stack.Request) (*stack.Response, error) {
	b, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.got = append(a.got, b)
	a.mu.Unlock()
	req.Info.Route, req.Info.Endpoint, req.Info.ServerID = a.route, a.endpoint, a.serverID
	status := a.status
	if status == 0 {
		status = 200
	}
	return &stack.Response{Status: status, Header: a.header.Clone(), Body: stack.BytesBody(a.body, a.trailers)}, nil
}

var (
	outboundConn = &stack.ConnInfo{Direction: "outbound", Client: netip.MustParseAddrPort("127.0.0.1:40000"),
		OrigDst: netip.MustParseAddrPort("10.96.0.10:8080")}
	inboundConn = &stack.ConnInfo{Direction: "inbound", Client: netip.MustParseAddrPort("[::ffff:10.0.0.9]:50000"),
		OrigDst: netip.MustParseAddrPort("10.0.0.5:8080"), ClientID: "spiffe://cluster.local/ns/demo/sa/web"}
)

func newTestTap() (*Tap, *fakeClock) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return New(Config{Identity: "spiffe://cluster.local/ns/demo/sa/voting",
		Labels: map[string]string{"namespace": "demo", "workload": "voting", "pod": "voting-0", "other": "x"}, Now: clock.Now}), clock
}

func mustOpen(t *testing.T, tp *Tap, req *tappb.ObserveRequest) *session {
	t.Helper()
	s, err := tp.open(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.close(s) })
	return s
}

// send passes one request through h and reads its answer to the end,
// returning the response body the client got.
func send(t *testing.T, h stack.Handler, ci *stack.ConnInfo, method, path string, header stack.Header, body []byte) []byte {
	t.Helper()
	req := &stack.Request{Method: method, Scheme: "http", Authority: "voting.demo:8080", Path: path,
		Header: header, Body: stack.BytesBody(body, nil), ProtoMajor: 2, Conn: ci}
	resp, err := h.Serve(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return got
}

// drain takes the events queued for s, as the server would send them.
func drain(s *session) []*tappb.Event {
	var out []*tappb.Event
	for {
		select {
		case ev := <-s.events:
			ev.Dropped = s.dropped.Swap(0)
			out = append(out, ev)
		default:
			return out
		}
	}
}

func TestIdleLayerCostsNoAllocation(t *testing.T) {
	tp, _ := newTestTap()
	resp := &stack.Response{Status: 204, Body: stack.NoBody}
	h := tp.Layer("outbound")(stack.HandlerFunc(func(context.Context, *stack.Request) (*stack.Response, error) { return resp, nil }))
	req := &stack.Request{Method: "GET", Path: "/", Body: stack.NoBody, Conn: outboundConn}
	allocs := testing.AllocsPerRun(1000, func() { h.Serve(context.Background(), req) })
	if allocs != 0 {
		t.Errorf("the tap layer allocates %v times per request with no session open", allocs)
	}
	// After a session closed, too.
	s, _ := tp.open(&tappb.ObserveRequest{})
	tp.close(s)
	if tp.sessions.Load() != nil {
		t.Error("the session list is not empty after the last session closed")
	}
}

func TestEventsOfOneExchange(t *testing.T) {
	tp, clock := newTestTap()
	a := &app{status: 200, header: stack.Header{{Name: "content-type", Value: "application/grpc"}},
		body: []byte("\x00\x00\x00\x00\x02ok"), trailers: stack.Header{{Name: "grpc-status", Value: "7"}},
		route: "demo/vote", serverID: "spiffe://cluster.local/ns/demo/sa/web",
		endpoint: discovery.Endpoint{Addr: netip.MustParseAddrPort("10.0.0.7:8080"),
			Labels: map[string]string{"namespace": "demo", "workload": "web", "pod": "web-1"}}}
	s := mustOpen(t, tp, &tappb.ObserveRequest{})
	h := tp.Layer("outbound")(stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		clock.advance(5 * time.Millisecond)
		return a.Serve(ctx, req)
	}))
	send(t, h, outboundConn, "POST", "/demo.Vote/Up", stack.Header{{Name: "content-type", Value: "application/grpc"}}, []byte("hello"))
	evs := drain(s)
	if len(evs) != 3 {
		t.Fatalf("%d events, want request, response, end", len(evs))
	}
	rq, rs, end := evs[0].GetRequest(), evs[1].GetResponse(), evs[2].GetEnd()
	if rq == nil || rs == nil || end == nil {
		t.Fatalf("events %v", evs)
	}
	for _, ev := range evs {
		if ev.Stream != evs[0].Stream || ev.Stream == 0 || ev.Direction != "outbound" {
			t.Errorf("event %v: stream or direction", ev)
		}
		if ev.Destination.Address != "10.0.0.7:8080" || ev.Destination.Identity != a.serverID || ev.Destination.Labels["workload"] != "web" {
			t.Errorf("destination %v", ev.Destination)
		}
		if ev.Source.Identity != tp.identity || ev.Source.Labels["pod"] != "voting-0" || ev.Source.Labels["other"] != "" {
			t.Errorf("source %v", ev.Source)
		}
	}
	if rq.Method != "POST" || rq.Path != "/demo.Vote/Up" || rq.Route != "demo/vote" || len(rq.BodyPrefix) != 0 {
		t.Errorf("request %v", rq)
	}
	if rs.Status != 200 || rs.Latency.AsDuration() != 5*time.Millisecond {
		t.Errorf("response %v", rs)
	}
	if end.GrpcStatus != 7 || end.Status != 200 || end.RequestBytes != 5 || end.ResponseBytes != 7 || end.Error != "" {
		t.Errorf("end %v", end)
	}
	// Inbound: the client's address as IPv4, and this proxy's labels on
	// the destination.
	send(t, tp.Layer("inbound")(&app{}), inboundConn, "GET", "/", nil, nil)
	if in := drain(s); len(in) != 3 || in[0].Source.Address != "10.0.0.9:50000" || in[0].Source.Identity != inboundConn.ClientID ||
		in[0].Destination.Identity != tp.identity || in[0].Destination.Labels["workload"] != "voting" {
		t.Errorf("inbound events %v", in)
	}
	// A second request gets another stream.
	send(t, h, outboundConn, "GET", "/", nil, nil)
	if evs2 := drain(s); len(evs2) != 3 || evs2[0].Stream == evs[0].Stream {
		t.Errorf("second request: %v", evs2)
	}
}

// An answer the proxy made itself ends with its reason, as the errors
// layer told the client; a body cut short ends with why.
func TestEndSaysWhyTheExchangeFailed(t *testing.T) {
	tp, _ := newTestTap()
	s := mustOpen(t, tp, &tappb.ObserveRequest{})
	h := tp.Layer("outbound")(proxyerror.Layer(slog.New(slog.DiscardHandler))(stack.HandlerFunc(
		func(context.Context, *stack.Request) (*stack.Response, error) { return nil, stack.ErrNoEndpoints })))
	send(t, h, outboundConn, "GET", "/", nil, nil)
	if evs := drain(s); len(evs) != 3 || evs[2].GetEnd().Status != 503 || evs[2].GetEnd().Error != stack.ErrNoEndpoints.Error() {
		t.Errorf("events %v", evs)
	}
	cut := tp.Layer("outbound")(stack.HandlerFunc(func(_ context.Context, req *stack.Request) (*stack.Response, error) {
		return &stack.Response{Status: 200, Body: &failingBody{}}, nil
	}))
	resp, _ := cut.Serve(context.Background(), &stack.Request{Method: "GET", Path: "/", Body: stack.NoBody, Conn: outboundConn})
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if evs := drain(s); len(evs) != 3 || evs[2].GetEnd().Error != "stream reset" || evs[2].GetEnd().ResponseBytes != 2 {
		t.Errorf("events %v", evs)
	}
}

type failingBody struct{ read bool }

func (b *failingBody) Read(p []byte) (int, error) {
	if !b.read {
		b.read = true
		return copy(p, "ab"), nil
	}
	return 0, errors.New("stream reset")
}
func (b *failingBody) Trailers() stack.Header { return nil }
func (b *failingBody) Close() error           { return nil }

func TestFiltersExcludeWhatTheyShould(t *testing.T) {
	a := &app{route: "demo/vote", serverID: "spiffe://cluster.local/ns/demo/sa/web",
		endpoint: discovery.Endpoint{Addr: netip.MustParseAddrPort("10.0.0.7:8080")}}
	for _, c := range []struct {
		name   string
		filter *tappb.Filter
		ci     *stack.ConnInfo
		want   bool
	}{
		{"empty", &tappb.Filter{}, outboundConn, true},
		{"direction", &tappb.Filter{Direction: "inbound"}, outboundConn, false},
		{"direction matches", &tappb.Filter{Direction: "inbound"}, inboundConn, true},
		{"method", &tappb.Filter{Method: "POST"}, outboundConn, false},
		{"method matches", &tappb.Filter{Method: "get"}, outboundConn, true},
		{"path prefix", &tappb.Filter{PathPrefix: "/api/votes"}, outboundConn, false},
		{"path prefix matches without the query", &tappb.Filter{PathPrefix: "/api/vote"}, outboundConn, true},
		{"path prefix is not matched in the query", &tappb.Filter{PathPrefix: "/api/vote?x"}, outboundConn, false},
		{"authority", &tappb.Filter{Authority: "web.demo:8080"}, outboundConn, false},
		{"authority matches", &tappb.Filter{Authority: "voting.demo:8080"}, outboundConn, true},
		{"route", &tappb.Filter{Route: "demo/other"}, outboundConn, false},
		{"route matches", &tappb.Filter{Route: "demo/vote"}, outboundConn, true},
		{"outbound peer address", &tappb.Filter{PeerAddresses: []string{"10.0.0.8"}}, outboundConn, false},
		{"outbound peer address matches the endpoint", &tappb.Filter{PeerAddresses: []string{"10.0.0.8", "10.0.0.7"}}, outboundConn, true},
		{"outbound peer identity", &tappb.Filter{PeerIdentity: "spiffe://cluster.local/ns/demo/sa/x"}, outboundConn, false},
		{"outbound peer identity matches", &tappb.Filter{PeerIdentity: a.serverID}, outboundConn, true},
		{"inbound peer address", &tappb.Filter{PeerAddresses: []string{"10.0.0.7"}}, inboundConn, false},
		{"inbound peer address matches the client", &tappb.Filter{PeerAddresses: []string{"10.0.0.9"}}, inboundConn, true},
		{"inbound peer identity", &tappb.Filter{PeerIdentity: a.serverID + "x"}, inboundConn, false},
		{"inbound peer identity matches the client", &tappb.Filter{PeerIdentity: inboundConn.ClientID}, inboundConn, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp, _ := newTestTap()
			s := mustOpen(t, tp, &tappb.ObserveRequest{Filter: c.filter})
			h := tp.Layer(c.ci.Direction)(a)
			send(t, h, c.ci, "GET", "/api/vote?x=1", nil, nil)
			evs := drain(s)
			if got := len(evs) > 0; got != c.want {
				t.Errorf("filter %v: events %v, want any: %t", c.filter, evs, c.want)
			}
		})
	}
}

// The cap holds in every second of the session, and what it holds back is
// counted in the dropped field of the next events.
func TestCapHoldsAndDropsAreCounted(t *testing.T) {
	tp, clock := newTestTap()
	const rate = 10
	s := mustOpen(t, tp, &tappb.ObserveRequest{MaxEventsPerSecond: rate})
	h := tp.Layer("outbound")(&app{})
	var sent, dropped uint64
	for second := range 5 {
		for range 40 {
			send(t, h, outboundConn, "GET", "/", nil, nil)
			clock.advance(time.Second / 50)
		}
		evs := drain(s)
		if len(evs) > rate {
			t.Errorf("second %d: %d events, over the cap of %d", second, len(evs), rate)
		}
		sent += uint64(len(evs))
		for _, ev := range evs {
			dropped += ev.Dropped
		}
		clock.advance(time.Second / 5)
	}
	dropped += s.dropped.Load()
	if total := uint64(5 * 40 * 3); sent+dropped != total {
		t.Errorf("%d events sent and %d dropped, want %d in all", sent, dropped, total)
	}
	if sent < 5*rate-5 {
		t.Errorf("only %d events sent in 5 seconds at %d a second", sent, rate)
	}
	if _, err := tp.open(&tappb.ObserveRequest{MaxEventsPerSecond: 1_000_000}); err != nil {
		t.Fatal(err)
	}
	if got := (*tp.sessions.Load())[1].limit.rate; got != MaxEventsPerSecond {
		t.Errorf("a session asking a million events a second gets %d, want the cap %d", got, MaxEventsPerSecond)
	}
}

// Nobody reads: requests go on, the queue stays bounded, the rest is
// counted as dropped.
func TestStalledReaderNeverBlocksRequests(t *testing.T) {
	tp, _ := newTestTap()
	s := mustOpen(t, tp, &tappb.ObserveRequest{MaxEventsPerSecond: MaxEventsPerSecond})
	h := tp.Layer("outbound")(&app{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			send(t, h, outboundConn, "GET", "/", nil, nil)
		}
	}()
	<-done // a blocked request would hang here until the test's timeout
	if len(s.events) != eventBuffer {
		t.Errorf("%d events queued, want the buffer's %d", len(s.events), eventBuffer)
	}
	if got, want := s.dropped.Load(), uint64(3000-eventBuffer); got != want {
		t.Errorf("dropped %d, want %d", got, want)
	}
}

func TestRedactedHeaderValuesNeverAppear(t *testing.T) {
	tp, _ := newTestTap()
	s := mustOpen(t, tp, &tappb.ObserveRequest{RedactHeaders: []string{"X-Api-Key"}})
	a := &app{header: stack.Header{{Name: "set-cookie", Value: "session=resp-secret"}, {Name: "x-api-key", Value: "resp-secret"}, {Name: "x-ok", Value: "shown"}}}
	h := tp.Layer("outbound")(a)
	send(t, h, outboundConn, "GET", "/", stack.Header{
		{Name: "authorization", Value: "Bearer req-secret"}, {Name: "cookie", Value: "a=req-secret"},
		{Name: "proxy-authorization", Value: "Basic req-secret"}, {Name: "x-api-key", Value: "req-secret"},
		{Name: "accept", Value: "shown"},
	}, nil)
	evs := drain(s)
	if len(evs) != 3 {
		t.Fatalf("%d events", len(evs))
	}
	var all []*tappb.Header
	all = append(all, evs[0].GetRequest().Headers...)
	all = append(all, evs[1].GetResponse().Headers...)
	shown := 0
	for _, hd := range all {
		if strings.Contains(hd.Value, "secret") {
			t.Errorf("header %s shows its value %q", hd.Name, hd.Value)
		}
		if hd.Value == "shown" {
			shown++
		}
	}
	if len(all) != 8 || shown != 2 {
		t.Errorf("headers %v: want all 8, 2 of them shown", all)
	}
}

func TestBodiesAreCapturedRedactedAndLeftAlone(t *testing.T) {
	tp, _ := newTestTap()
	reqBody := []byte(`{"user":"ann","password":"hunter2","card":"4111-1111-1111-1111","note":"` + strings.Repeat("x", 100) + `"}`)
	respBody := []byte(`{"token":"resp-secret","ok":true}`)
	a := &app{body: respBody}
	withBodies := mustOpen(t, tp, &tappb.ObserveRequest{BodyBytes: 60, RedactJsonFields: []string{"Password", "token"},
		RedactPatterns: []string{`\d{4}-\d{4}-\d{4}-\d{4}`}})
	without := mustOpen(t, tp, &tappb.ObserveRequest{})
	small := mustOpen(t, tp, &tappb.ObserveRequest{BodyBytes: 8})
	h := tp.Layer("outbound")(a)
	got := send(t, h, outboundConn, "POST", "/api/vote", nil, reqBody)

	if !bytes.Equal(got, respBody) || len(a.got) != 1 || !bytes.Equal(a.got[0], reqBody) {
		t.Fatalf("the tap changed a body: the client got %q, the application %q", got, a.got)
	}
	evs := drain(withBodies)
	if len(evs) != 3 {
		t.Fatalf("%d events", len(evs))
	}
	rq, end := evs[0].GetRequest(), evs[2].GetEnd()
	// 60 bytes cut the card number: the pattern cannot see it, so it shows
	// the digits before the cut (documented), never the password.
	if want := `{"user":"ann","password":"[REDACTED]","card":"4111-1111-1111-11`; string(rq.BodyPrefix) != want || !rq.BodyTruncated {
		t.Errorf("request body prefix %q (truncated %t), want %q", rq.BodyPrefix, rq.BodyTruncated, want)
	}
	if want := `{"token":"[REDACTED]","ok":true}`; string(end.ResponseBodyPrefix) != want || end.ResponseBodyTruncated {
		t.Errorf("response body prefix %q (truncated %t), want %q", end.ResponseBodyPrefix, end.ResponseBodyTruncated, want)
	}
	if end.RequestBytes != uint64(len(reqBody)) || end.ResponseBytes != uint64(len(respBody)) {
		t.Errorf("bytes %d/%d", end.RequestBytes, end.ResponseBytes)
	}

	// With room for the whole body, the pattern hides the card number.
	tp2, _ := newTestTap()
	s2 := mustOpen(t, tp2, &tappb.ObserveRequest{BodyBytes: 1 << 20, RedactJsonFields: []string{"password"},
		RedactPatterns: []string{`\d{4}-\d{4}-\d{4}-\d{4}`}})
	send(t, tp2.Layer("outbound")(&app{}), outboundConn, "POST", "/", nil, reqBody)
	rq2 := drain(s2)[0].GetRequest()
	if strings.Contains(string(rq2.BodyPrefix), "4111") || !strings.Contains(string(rq2.BodyPrefix), `"card":"[REDACTED]"`) || rq2.BodyTruncated {
		t.Errorf("whole body %q (truncated %t)", rq2.BodyPrefix, rq2.BodyTruncated)
	}

	// Each session gets its own share of the prefix.
	if rq := drain(small)[0].GetRequest(); string(rq.BodyPrefix) != `{"user":` || !rq.BodyTruncated {
		t.Errorf("a session asking 8 bytes got %q (truncated %t)", rq.BodyPrefix, rq.BodyTruncated)
	}
	// A session that asked for no body gets no body byte.
	for _, ev := range drain(without) {
		if len(ev.GetRequest().GetBodyPrefix()) > 0 || len(ev.GetEnd().GetResponseBodyPrefix()) > 0 {
			t.Errorf("a session without body_bytes got a body: %v", ev)
		}
	}
	if tp.captures.Load() != 0 {
		t.Errorf("%d captures still held after the exchanges ended", tp.captures.Load())
	}
}

func TestBadRequestsAreRefused(t *testing.T) {
	tp, _ := newTestTap()
	for _, req := range []*tappb.ObserveRequest{
		{Filter: &tappb.Filter{Direction: "sideways"}},
		{Filter: &tappb.Filter{PeerAddresses: []string{"not-an-ip"}}},
		{RedactPatterns: []string{"("}},
		{RedactJsonFields: make([]string, maxRedactRules+1)},
	} {
		if _, err := tp.open(req); err == nil {
			t.Errorf("open(%v) was taken", req)
		}
	}
	for range MaxSessions {
		if _, err := tp.open(&tappb.ObserveRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tp.open(&tappb.ObserveRequest{}); err == nil {
		t.Errorf("session %d was opened, past the cap", MaxSessions+1)
	}
}

// A followed request keeps what the engines frame a body by: NoBody stays
// NoBody, a body of known length keeps its Len.
func TestTappedBodiesKeepTheirFraming(t *testing.T) {
	tp, _ := newTestTap()
	mustOpen(t, tp, &tappb.ObserveRequest{BodyBytes: 16})
	var sawNoBody, sawLen bool
	h := tp.Layer("outbound")(stack.HandlerFunc(func(_ context.Context, req *stack.Request) (*stack.Response, error) {
		if req.Body == stack.NoBody {
			sawNoBody = true
			return &stack.Response{Status: 204, Body: stack.NoBody}, nil
		}
		l, ok := req.Body.(interface{ Len() int })
		sawLen = ok && l.Len() == 5
		io.Copy(io.Discard, req.Body)
		return &stack.Response{Status: 200, Body: stack.BytesBody([]byte("hello"), nil)}, nil
	}))
	get := &stack.Request{Method: "GET", Path: "/", Body: stack.NoBody, Conn: outboundConn}
	if _, err := h.Serve(context.Background(), get); err != nil {
		t.Fatal(err)
	}
	req := &stack.Request{Method: "POST", Path: "/", Body: stack.BytesBody([]byte("hello"), nil), Conn: outboundConn}
	resp, err := h.Serve(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := resp.Body.(interface{ Len() int }); !ok || l.Len() != 5 {
		t.Error("the response body lost its Len")
	}
	io.Copy(io.Discard, resp.Body)
	if !sawNoBody || !sawLen {
		t.Errorf("below the tap: NoBody kept %t, Len kept %t", sawNoBody, sawLen)
	}
}

// Drops no event follows are still told: within a second, an event of no
// kind carries them.
func TestDropsNoEventFollowsAreSentOnTheirOwn(t *testing.T) {
	tp, _ := newTestTap()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan *tappb.Event, 100)
	sending, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		first := true
		done <- tp.Observe(ctx, &tappb.ObserveRequest{MaxEventsPerSecond: 1}, func(ev *tappb.Event) error {
			if first {
				// Hold the first event until the test has made drops
				// after it: those can only be told on their own.
				first = false
				close(sending)
				<-release
			}
			got <- ev
			return nil
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for tp.sessions.Load() == nil {
		time.Sleep(time.Millisecond)
	}
	h := tp.Layer("outbound")(&app{})
	// The fake clock stands still: one event in its second, the other 14
	// of 5 requests dropped. The first request's answer may be dropped
	// before or after its request event is taken, so the first event
	// carries 0 to 2 of them; the other 12 come after it.
	send(t, h, outboundConn, "GET", "/", nil, nil)
	<-sending
	for range 4 {
		send(t, h, outboundConn, "GET", "/", nil, nil)
	}
	close(release)
	first := <-got
	if first.GetRequest() == nil || first.Dropped > 2 {
		t.Fatalf("first event %v, want the first request with at most 2 dropped", first)
	}
	flushed := <-got
	if flushed.Kind != nil || first.Dropped+flushed.Dropped != 14 || flushed.Time == nil {
		t.Errorf("flushed %v after a first event with %d dropped, want an event of no kind with the rest of 14 dropped", flushed, first.Dropped)
	}
}
