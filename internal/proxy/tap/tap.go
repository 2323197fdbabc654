// Package tap is the proxy's side of tap: a layer beside metrics that,
// while tap sessions are open, turns the requests matching a session's
// filter into events (the request, its response's head, its end), and the
// gRPC service (proto/tap) that streams them to the controller. It is not
// the controller's fan-out, nor who may tap: the admin port's mTLS decides
// that (see the proxy package).
//
// With no session open the layer costs one atomic load. A tapped request is
// never delayed: events over a session's rate, or more than its reader
// keeps up with, are dropped and counted, and bodies are copied as they
// stream past, never held.
package tap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/skeinmesh/skein/internal/proxy/redact"
	tappb "github.com/skeinmesh/skein/proto/tap"
)

// Bounds of what a session may ask; the controller is the only client,
// but the proxy bounds its memory anyway.
const (
	// DefaultEventsPerSecond is a session's rate when it asks for none.
	DefaultEventsPerSecond = 100
	// MaxEventsPerSecond caps what a session may ask.
	MaxEventsPerSecond = 1000
	// MaxBodyBytes caps the body prefix a session may ask for.
	MaxBodyBytes = 64 << 10
	// MaxSessions is how many sessions a proxy serves at once.
	MaxSessions = 16
	// maxCaptures bounds the requests whose bodies are being copied at
	// once (two prefixes of at most MaxBodyBytes each, 8 MiB in all); past
	// it a tapped request's events carry no body and say it was truncated.
	maxCaptures = 64
	// eventBuffer is how many events wait for a slow reader before the
	// next ones are dropped; a session with bodies queues fewer, so that
	// its queue holds at most about queuedBodyBytes of them.
	eventBuffer     = 256
	minEventBuffer  = 16
	queuedBodyBytes = 1 << 20
	// Bounds of the lists in a request.
	maxPeerAddresses = 4096
	maxRedactRules   = 64
	maxStringLen     = 1024
)

// Config is what the tap needs to know about its proxy.
type Config struct {
	// Identity is the proxy's own SPIFFE ID; empty without one.
	Identity string
	// Labels are the proxy's own labels (-labels); namespace, workload and
	// pod are put on the events' peer on this proxy's side.
	Labels map[string]string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Tap holds the open sessions and makes the layer that feeds them.
type Tap struct {
	// sessions is nil when none is open: the layer's only cost then.
	sessions atomic.Pointer[[]*session]
	mu       sync.Mutex // serialises changes of sessions
	streams  atomic.Uint64
	captures atomic.Int64
	identity string
	labels   map[string]string
	now      func() time.Time
}

// New makes a Tap with no session open.
func New(cfg Config) *Tap {
	t := &Tap{identity: cfg.Identity, now: cfg.Now}
	if t.now == nil {
		t.now = time.Now
	}
	for _, k := range []string{"namespace", "workload", "pod"} {
		if v := cfg.Labels[k]; v != "" {
			if t.labels == nil {
				t.labels = map[string]string{}
			}
			t.labels[k] = v
		}
	}
	return t
}

// errTooManySessions is returned by open past MaxSessions.
var errTooManySessions = errors.New("too many tap sessions on this proxy")

// ErrBadRequest is what Observe's error is (errors.Is) when the request
// asks what no session can be (an unknown direction, a pattern that does
// not compile, lists past their bounds).
var ErrBadRequest = errors.New("bad tap request")

// droppedFlushInterval: drops not yet told (no event followed them) are
// sent on their own, as an event of no kind, this often.
const droppedFlushInterval = time.Second

// Observe opens a session for req and hands its events to send, each with
// the events dropped since the one before, until ctx ends (nil) or send
// fails (its error). Drops no event follows are sent on their own, as an
// event of no kind, within a second. send may block: traffic does not
// wait for it, events queue (boundedly) or are dropped.
func (t *Tap) Observe(ctx context.Context, req *tappb.ObserveRequest, send func(*tappb.Event) error) error {
	sess, err := t.open(req)
	if err != nil {
		return err
	}
	defer t.close(sess)
	flush := time.NewTicker(droppedFlushInterval)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-sess.events:
			ev.Dropped = sess.dropped.Swap(0)
			if err := send(ev); err != nil {
				return err
			}
		case <-flush.C:
			if n := sess.dropped.Swap(0); n > 0 {
				if err := send(&tappb.Event{Time: timestamppb.New(t.now()), Dropped: n}); err != nil {
					return err
				}
			}
		}
	}
}

// open starts a session for req; its events arrive on the session's
// channel until close.
func (t *Tap) open(req *tappb.ObserveRequest) (*session, error) {
	s, err := newSession(req, t.now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var list []*session
	if cur := t.sessions.Load(); cur != nil {
		list = *cur
	}
	if len(list) >= MaxSessions {
		return nil, errTooManySessions
	}
	next := append(append(make([]*session, 0, len(list)+1), list...), s)
	t.sessions.Store(&next)
	return s, nil
}

// close ends a session: no event is given to it after close returns.
func (t *Tap) close(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.sessions.Load()
	if cur == nil {
		return
	}
	var next []*session
	for _, o := range *cur {
		if o != s {
			next = append(next, o)
		}
	}
	if len(next) == 0 {
		t.sessions.Store(nil)
		return
	}
	t.sessions.Store(&next)
}

// session is one Observe call: its filter, its redaction, its rate and its
// bounded queue of events.
type session struct {
	filter    filter
	bodyBytes int
	headers   redact.Headers
	body      *redact.Body
	events    chan *tappb.Event
	dropped   atomic.Uint64
	limit     windowLimit
}

func newSession(req *tappb.ObserveRequest, now func() time.Time) (*session, error) {
	f, err := newFilter(req.GetFilter())
	if err != nil {
		return nil, err
	}
	if err := checkList("redact_json_fields", req.RedactJsonFields); err != nil {
		return nil, err
	}
	if err := checkList("redact_patterns", req.RedactPatterns); err != nil {
		return nil, err
	}
	if err := checkList("redact_headers", req.RedactHeaders); err != nil {
		return nil, err
	}
	body, err := redact.NewBody(req.RedactJsonFields, req.RedactPatterns)
	if err != nil {
		return nil, err
	}
	rate := int(req.MaxEventsPerSecond)
	if rate == 0 {
		rate = DefaultEventsPerSecond
	}
	return &session{
		filter:    f,
		bodyBytes: int(min(req.BodyBytes, MaxBodyBytes)),
		headers:   redact.NewHeaders(req.RedactHeaders),
		body:      body,
		events:    make(chan *tappb.Event, queueLen(int(min(req.BodyBytes, MaxBodyBytes)))),
		limit:     windowLimit{rate: min(rate, MaxEventsPerSecond), now: now},
	}, nil
}

// queueLen is how many events a session queues for its reader, given
// the body prefix each may carry.
func queueLen(bodyBytes int) int {
	if bodyBytes == 0 {
		return eventBuffer
	}
	return min(max(queuedBodyBytes/bodyBytes, minEventBuffer), eventBuffer)
}

func checkList(name string, l []string) error {
	if len(l) > maxRedactRules {
		return fmt.Errorf("%s: %d entries, at most %d", name, len(l), maxRedactRules)
	}
	for _, s := range l {
		if len(s) > maxStringLen {
			return fmt.Errorf("%s: an entry of %d bytes, at most %d", name, len(s), maxStringLen)
		}
	}
	return nil
}

// emit queues ev if the session's rate and queue have room, else counts it
// dropped. It never waits.
func (s *session) emit(ev *tappb.Event) {
	if !s.limit.take() {
		s.dropped.Add(1)
		return
	}
	select {
	case s.events <- ev:
	default:
		s.dropped.Add(1)
	}
}

// windowLimit lets rate events through in each second of the session,
// counted from its start: never more than rate in any of those seconds.
type windowLimit struct {
	rate int
	now  func() time.Time

	mu     sync.Mutex
	window time.Time // start of the current second
	used   int
}

// room reports whether an event would be let through now, without taking
// it: a request is only followed while its session has room.
func (l *windowLimit) room() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advance()
	return l.used < l.rate
}

// take lets one event through, or reports that the second's are spent.
func (l *windowLimit) take() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advance()
	if l.used >= l.rate {
		return false
	}
	l.used++
	return true
}

func (l *windowLimit) advance() {
	now := l.now()
	if l.window.IsZero() {
		l.window = now
		return
	}
	if d := now.Sub(l.window); d >= time.Second {
		l.window = l.window.Add(d.Truncate(time.Second))
		l.used = 0
	}
}

// filter is a session's Filter, parsed.
type filter struct {
	direction, method, pathPrefix, authority, route, peerIdentity string
	peers                                                         []netip.Addr
}

func newFilter(f *tappb.Filter) (filter, error) {
	out := filter{
		direction: f.GetDirection(), method: f.GetMethod(), pathPrefix: f.GetPathPrefix(),
		authority: f.GetAuthority(), route: f.GetRoute(), peerIdentity: f.GetPeerIdentity(),
	}
	switch out.direction {
	case "", "inbound", "outbound":
	default:
		return filter{}, fmt.Errorf("filter.direction: %q is neither inbound nor outbound", out.direction)
	}
	for _, s := range []string{out.method, out.pathPrefix, out.authority, out.route, out.peerIdentity} {
		if len(s) > maxStringLen {
			return filter{}, fmt.Errorf("filter: a field of %d bytes, at most %d", len(s), maxStringLen)
		}
	}
	if n := len(f.GetPeerAddresses()); n > maxPeerAddresses {
		return filter{}, fmt.Errorf("filter.peer_addresses: %d, at most %d", n, maxPeerAddresses)
	}
	for _, a := range f.GetPeerAddresses() {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return filter{}, fmt.Errorf("filter.peer_addresses: %q is not an IP address", a)
		}
		out.peers = append(out.peers, ip.Unmap())
	}
	return out, nil
}
