// Package mirror is the outbound mirror layer: for the share of requests a
// route's RequestMirror filters ask, it sends a copy of the request to the
// mirror backend, fire-and-forget, and compares the mirror's answer with
// the primary's (status, chosen header fields, a hash of the body up to
// MaxBody). The client's answer and its timing come from the primary
// alone: mirrors never delay it, and past the cap on mirrors in flight
// they are dropped. Results are counted (mirror_total) and a few
// mismatches kept as examples (Examples). It does not choose routes: the
// route layer above sets req.Info.Rule.
package mirror

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/routes"
)

const (
	// DefaultMaxInFlight is the proxy's cap on mirror requests in flight;
	// a mirror over it is dropped (result "dropped").
	DefaultMaxInFlight = 100
	// DefaultTimeout bounds one mirror: sending the copy, its answer and
	// waiting for the primary's to compare with (result "error" past it).
	DefaultTimeout = 10 * time.Second
	// MaxBody is how much of a request body is kept for the mirrors (a
	// longer one is not mirrored: result "skipped") and how much of each
	// response body is hashed.
	MaxBody = 64 << 10
	// PrefixLen is how much of each body an example keeps.
	PrefixLen = 256
	// ShadowSuffix is appended to the host of a mirror's :authority, as
	// Envoy and Istio do, so the mirror backend can tell copies apart.
	ShadowSuffix = "-shadow"
)

// DefaultCompareHeaders are compared when a Mirror names none.
var DefaultCompareHeaders = []string{"content-type", "grpc-status"}

// Values of mirror_total's result label.
const (
	ResultMatch    = "match"    // same status, compared fields and body hash
	ResultMismatch = "mismatch" // something differs
	ResultError    = "error"    // no answer to compare: the mirror or the primary failed, or the timeout
	ResultDropped  = "dropped"  // over the cap on mirrors in flight
	ResultSkipped  = "skipped"  // the request body was over MaxBody or not read to its end
)

// Config of a Mirrorer; zero values take the defaults.
type Config struct {
	MaxInFlight int
	Timeout     time.Duration
	// Registerer receives mirror_total; nil keeps it unexported.
	Registerer prometheus.Registerer
	// Examples keeps recent mismatches; nil keeps none.
	Examples *Examples
	Log      *slog.Logger
}

// Mirrorer sends and compares the proxy's mirror requests.
type Mirrorer struct {
	ctx      context.Context
	slots    chan struct{}
	timeout  time.Duration
	total    *prometheus.CounterVec
	examples *Examples
	log      *slog.Logger
	wg       sync.WaitGroup
}

// New returns a Mirrorer whose mirrors stop when ctx ends.
func New(ctx context.Context, cfg Config) (*Mirrorer, error) {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m := &Mirrorer{
		ctx:      ctx,
		slots:    make(chan struct{}, cfg.MaxInFlight),
		timeout:  cfg.Timeout,
		examples: cfg.Examples,
		log:      cfg.Log,
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mirror_total",
			Help: "Mirrored requests by how the mirror's answer compared with the primary's.",
		}, []string{"route_name", "dst_namespace", "dst_service", "backend", "result"}),
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(m.total); err != nil {
			return nil, fmt.Errorf("registering mirror_total: %w", err)
		}
	}
	return m, nil
}

// Wait waits for the mirrors in flight to end.
func (m *Mirrorer) Wait() { m.wg.Wait() }

// Layer is the mirror layer. path sends a mirror request on its own way
// to req.Info.Backend (resolve, balance, connect: balanced and over mTLS
// like any request) and must not lead back through this layer.
func (m *Mirrorer) Layer(path stack.Handler) stack.Layer {
	return func(next stack.Handler) stack.Handler {
		return stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
			rule := req.Info.Rule
			if rule == nil || len(rule.Mirrors) == 0 || req.Method == "CONNECT" || req.IsUpgrade() {
				return next.Serve(ctx, req)
			}
			return m.serve(ctx, req, rule.Mirrors, path, next)
		})
	}
}

// copyOf is what a mirror request is made from, taken before the layers
// below change the request.
type copyOf struct {
	method, scheme, authority, path string
	header                          stack.Header
	major                           int
	conn                            *stack.ConnInfo
	route, namespace, service       string
}

func (m *Mirrorer) serve(ctx context.Context, req *stack.Request, mirrors []routes.Mirror, path, next stack.Handler) (*stack.Response, error) {
	var chosen []*routes.Mirror
	for i := range mirrors {
		mr := &mirrors[i]
		if !sampled(mr.Percent) {
			continue
		}
		c := m.counter(req, mr)
		select {
		case m.slots <- struct{}{}:
			chosen = append(chosen, mr)
		default:
			c(ResultDropped)
		}
	}
	if len(chosen) == 0 {
		return next.Serve(ctx, req)
	}
	cp := &copyOf{
		method: req.Method, scheme: req.Scheme, authority: shadowAuthority(req.Authority), path: req.Path,
		header: req.Header.Clone(), major: req.ProtoMajor, route: req.Info.Route,
	}
	conn := *req.Conn
	conn.OrigDst = netip.AddrPort{} // a mirror goes to its backend or nowhere, never the primary's address
	cp.conn = &conn
	if req.Info.Policy != nil {
		cp.namespace, cp.service, _ = strings.Cut(req.Info.Policy.Service, "/")
	}
	var tee *teeBody
	if req.Body != stack.NoBody {
		tee = newTeeBody(req.Body)
		req.Body = tee
	}
	primary := newPending()
	for _, mr := range chosen {
		m.wg.Add(1)
		go m.run(cp, mr, tee, primary, path)
	}
	resp, err := next.Serve(ctx, req)
	if err != nil {
		primary.set(answer{err: err})
		return nil, err
	}
	b := newAnswerBuilder(resp.Status, resp.Header)
	if resp.Body == stack.NoBody {
		// Nothing to read; and a wrapper would hide from the engine that
		// the answer ends with its headers (gRPC trailers-only).
		primary.set(b.finish(nil))
		return resp, nil
	}
	resp.Body = &primaryBody{Body: resp.Body, b: b, answer: primary}
	return resp, nil
}

// run sends one mirror request and compares its answer with the
// primary's. It owns one slot and ends within the Mirrorer's timeout.
func (m *Mirrorer) run(cp *copyOf, mr *routes.Mirror, tee *teeBody, primary *pending, path stack.Handler) {
	defer m.wg.Done()
	defer func() { <-m.slots }()
	count := m.counterOf(cp, mr)
	ctx, cancel := context.WithTimeout(m.ctx, m.timeout)
	defer cancel()

	body := stack.NoBody
	if tee != nil {
		select {
		case <-tee.done:
		case <-ctx.Done():
			count(ResultError)
			return
		}
		var ok bool
		if body, ok = tee.copy(); !ok {
			count(ResultSkipped)
			return
		}
	}
	req := &stack.Request{
		Method: cp.method, Scheme: cp.scheme, Authority: cp.authority, Path: cp.path,
		Header: cp.header.Clone(), Body: body, ProtoMajor: cp.major, Conn: cp.conn,
	}
	req.Info.Backend = mr.Backend.Authority
	resp, err := path.Serve(ctx, req)
	if err != nil {
		m.log.Debug("mirror failed", "route", cp.route, "backend", mr.Backend.Authority, "err", err)
		count(ResultError)
		return
	}
	shadow, err := readAnswer(resp)
	if err != nil {
		m.log.Debug("mirror answer cut short", "route", cp.route, "backend", mr.Backend.Authority, "err", err)
		count(ResultError)
		return
	}
	select {
	case <-primary.done:
	case <-ctx.Done():
		count(ResultError)
		return
	}
	if primary.a.err != nil {
		count(ResultError)
		return
	}
	names := mr.CompareHeaders
	if names == nil {
		names = DefaultCompareHeaders
	}
	d := compare(&primary.a, &shadow, names)
	if d == nil {
		count(ResultMatch)
		return
	}
	count(ResultMismatch)
	if m.examples != nil {
		m.examples.add(exampleOf(cp, mr, &primary.a, &shadow, d))
	}
}

// readAnswer reads a mirror's response to its end (hashing up to
// MaxBody), then closes it.
func readAnswer(resp *stack.Response) (answer, error) {
	defer resp.Body.Close()
	b := newAnswerBuilder(resp.Status, resp.Header)
	buf := make([]byte, 16<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.write(buf[:n])
		if err == io.EOF {
			return b.finish(resp.Body.Trailers()), nil
		}
		if err != nil {
			return answer{}, err
		}
	}
}

// results are every value of mirror_total's result label.
var results = []string{ResultMatch, ResultMismatch, ResultError, ResultDropped, ResultSkipped}

// Known makes mirror_total's series of every mirror of p exist, at 0,
// before the first request is mirrored. A series born at its first count
// loses that count, and whatever follows until the first scrape, to
// Prometheus's increase(): skein diff and the dashboards read 0 where the
// route's first seconds of mirrors went. The series are as many as the
// controller's policy has mirrors, times five.
func (m *Mirrorer) Known(p *routes.Policy) {
	if p == nil {
		return
	}
	namespace, service, _ := strings.Cut(p.Service, "/")
	for i := range p.Routes {
		r := &p.Routes[i]
		for j := range r.Rules {
			for _, mr := range r.Rules[j].Mirrors {
				for _, result := range results {
					m.total.WithLabelValues(r.RouteName(), namespace, service, mr.Backend.Authority, result)
				}
			}
		}
	}
}

// counter returns the function that counts one result of mr for req.
func (m *Mirrorer) counter(req *stack.Request, mr *routes.Mirror) func(result string) {
	cp := &copyOf{route: req.Info.Route}
	if req.Info.Policy != nil {
		cp.namespace, cp.service, _ = strings.Cut(req.Info.Policy.Service, "/")
	}
	return m.counterOf(cp, mr)
}

func (m *Mirrorer) counterOf(cp *copyOf, mr *routes.Mirror) func(result string) {
	return func(result string) {
		m.total.WithLabelValues(cp.route, cp.namespace, cp.service, mr.Backend.Authority, result).Inc()
	}
}

// sampled reports whether a request is mirrored at percent (0-100).
func sampled(percent float64) bool {
	return percent >= 100 || (percent > 0 && rand.Float64()*100 < percent)
}

// shadowAuthority appends ShadowSuffix to the host of authority, before
// its port: "web.demo:8080" becomes "web.demo-shadow:8080".
func shadowAuthority(authority string) string {
	if authority == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		return authority + ShadowSuffix
	}
	return net.JoinHostPort(host+ShadowSuffix, port)
}

// ValidateConstLabels reports a proxy constant label (-labels) that
// mirror_total's own labels would collide with, for the proxy's
// Config.Validate (the others are the metrics package's).
func ValidateConstLabels(constLabels map[string]string) error {
	for _, name := range []string{"backend", "result"} {
		if _, ok := constLabels[name]; ok {
			return fmt.Errorf("metrics constant label %q: name is already used by mirror_total", name)
		}
	}
	return nil
}
