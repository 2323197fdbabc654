// Package timeout is the outbound timeout layer: it bounds a request by
// its route's timeouts (routes.Timeouts of req.Info.Rule) and by a gRPC
// client's grpc-timeout, cancels the request below when one runs out, and
// turns that into the proxy's answer — 504 or DEADLINE_EXCEEDED (through
// the errors layer) before the response headers went out, a reset stream
// after. It sits above the retry layer, so its bounds cover every attempt;
// the retry layer bounds each attempt itself.
package timeout

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/routes"
)

// The timeout label of outbound_http_timeouts_total: which bound ran out.
const (
	KindRequest        = "request"         // Timeouts.Request
	KindBackendRequest = "backend_request" // Timeouts.BackendRequest, without retries
	KindResponseHeader = "response_header" // Timeouts.ResponseHeader
	KindIdle           = "idle"            // Timeouts.Idle
	KindGRPC           = "grpc_timeout"    // the client's grpc-timeout
)

// Error says which timeout cut a request short. It is a stack.ErrTimeout.
type Error struct {
	Kind  string
	Limit time.Duration
}

func (e *Error) Error() string {
	switch e.Kind {
	case KindResponseHeader:
		return fmt.Sprintf("request timeout: no response headers within %v", e.Limit)
	case KindIdle:
		return fmt.Sprintf("request timeout: idle for %v", e.Limit)
	case KindGRPC:
		return fmt.Sprintf("request timeout: grpc-timeout %v ran out", e.Limit)
	case KindBackendRequest:
		return fmt.Sprintf("request timeout: backend request timeout %v ran out", e.Limit)
	}
	return fmt.Sprintf("request timeout: the route's request timeout %v ran out", e.Limit)
}

// Is makes an Error a stack.ErrTimeout.
func (e *Error) Is(target error) bool { return target == stack.ErrTimeout }

// Layer is the timeout layer; timeouts are counted in reg.
func Layer(reg *metrics.Registry) stack.Layer {
	return func(next stack.Handler) stack.Handler { return &layer{next: next, reg: reg} }
}

type layer struct {
	next stack.Handler
	reg  *metrics.Registry
}

// bounds are the timeouts of one request; 0 is none.
type bounds struct {
	// total bounds the whole exchange, from here to the response body's
	// end: the shortest of the route's request timeout, its backend
	// request timeout when the retry layer does not apply it per attempt,
	// and the grpc-timeout.
	total     time.Duration
	totalKind string
	header    time.Duration
	idle      time.Duration
}

func (b *bounds) bound(d time.Duration, kind string) {
	if d > 0 && (b.total == 0 || d < b.total) {
		b.total, b.totalKind = d, kind
	}
}

func boundsOf(req *stack.Request, rule *routes.Rule) bounds {
	var b bounds
	if rule != nil {
		t := rule.Timeouts
		b.bound(t.Request, KindRequest)
		if !retries(rule) {
			b.bound(t.BackendRequest, KindBackendRequest)
		}
		b.header, b.idle = t.ResponseHeader, t.Idle
	}
	if req.IsGRPC() {
		if d, ok := parseGRPCTimeout(req.Header.Get("grpc-timeout")); ok {
			b.bound(d, KindGRPC)
		}
	}
	return b
}

// retries says whether the retry layer runs the rule's request in
// attempts, each bounded by the backend request timeout (or its own
// per-try timeout); without, that bound is the single attempt's, here.
func retries(rule *routes.Rule) bool { return rule.Retry != nil && rule.Retry.Limit > 0 }

func (l *layer) Serve(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	if req.Method == "CONNECT" || req.IsUpgrade() {
		// Tunnels last as long as they are used: the tunnel layer closes
		// idle ones.
		return l.next.Serve(ctx, req)
	}
	b := boundsOf(req, req.Info.Rule)
	if b.total == 0 && b.header == 0 && b.idle == 0 {
		return l.next.Serve(ctx, req)
	}
	if b.total > 0 && req.IsGRPC() {
		// The server may stop working when nobody waits any more.
		req.Header.Set("grpc-timeout", encodeGRPCTimeout(b.total))
	}
	w := l.watch(ctx, req, b)
	if b.idle > 0 && req.Body != stack.NoBody {
		req.Body = &requestBody{Body: req.Body, w: w}
	}
	resp, err := l.next.Serve(w.ctx, req)
	w.headersIn.Store(true)
	w.touch()
	if e := w.expired(); e != nil {
		if err == nil {
			resp.Body.Close()
		}
		w.finish()
		w.count()
		return nil, e
	}
	if err != nil || resp.Body == stack.NoBody {
		w.finish()
		return resp, err
	}
	body := &responseBody{Body: resp.Body, w: w}
	if b.idle > 0 {
		resp.Body = body // must see every read
	} else {
		resp.Body = &splicedBody{body}
	}
	return resp, nil
}

// watch is one request's running timeouts.
type watch struct {
	// ctx is the request's context below this layer. It is not a child of
	// the request's own (an HTTP/1 connection's requests share that, and
	// children would pile up on it): the parent's end reaches it through
	// stopParent, which finish undoes. A request that ended in time leaves
	// it uncancelled, so that an engine still finishing with the
	// connection (an HTTP/1 request body's last write) does not take it
	// for abandoned.
	ctx        context.Context
	cancel     context.CancelCauseFunc
	stopParent func() bool
	req        *stack.Request
	reg        *metrics.Registry

	// end is the first of: a timeout running out (its Error), the
	// exchange ending in time (finished).
	end       atomic.Pointer[Error]
	counted   atomic.Bool
	headersIn atomic.Bool

	timers     []*time.Timer
	started    time.Time
	idle       time.Duration
	lastActive atomic.Int64 // since started, ns
	idleTimer  *time.Timer
}

// finished marks a watch whose exchange ended before any timeout.
var finished = &Error{}

func (l *layer) watch(ctx context.Context, req *stack.Request, b bounds) *watch {
	w := &watch{req: req, reg: l.reg, started: time.Now(), idle: b.idle}
	w.ctx, w.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	w.stopParent = context.AfterFunc(ctx, func() { w.cancel(context.Cause(ctx)) })
	if b.total > 0 {
		// The layers below (retry: its per-try timeouts and grpc-timeout)
		// read what is left from the context.
		w.ctx = withDeadline{w.ctx, w.started.Add(b.total)}
	}
	if b.total > 0 {
		e := &Error{Kind: b.totalKind, Limit: b.total}
		w.timers = append(w.timers, time.AfterFunc(b.total, func() { w.expire(e) }))
	}
	if b.header > 0 {
		e := &Error{Kind: KindResponseHeader, Limit: b.header}
		w.timers = append(w.timers, time.AfterFunc(b.header, func() {
			if !w.headersIn.Load() {
				w.expire(e)
			}
		}))
	}
	if b.idle > 0 {
		w.idleTimer = time.AfterFunc(b.idle, w.checkIdle)
		w.timers = append(w.timers, w.idleTimer)
	}
	return w
}

// expire cuts the exchange short because of e, unless it ended already.
func (w *watch) expire(e *Error) {
	if w.end.CompareAndSwap(nil, e) {
		w.cancel(e)
	}
}

// finish ends the watch: the timers stop and the context below no longer
// follows the request's own.
func (w *watch) finish() {
	w.end.CompareAndSwap(nil, finished)
	for _, t := range w.timers {
		t.Stop()
	}
	w.stopParent()
}

// expired is the timeout that cut the exchange short, or nil.
func (w *watch) expired() *Error {
	if e := w.end.Load(); e != finished {
		return e
	}
	return nil
}

// count counts the timeout once; call it from the request's path (Serve or
// the response body), where req.Info is no longer written.
func (w *watch) count() {
	if e := w.expired(); e != nil && w.counted.CompareAndSwap(false, true) {
		w.reg.CountTimeout(&w.req.Info, e.Kind)
	}
}

// touch notes that bytes moved (or the response headers came), for the
// idle timeout.
func (w *watch) touch() {
	if w.idle > 0 {
		w.lastActive.Store(int64(time.Since(w.started)))
	}
}

func (w *watch) checkIdle() {
	quiet := time.Since(w.started) - time.Duration(w.lastActive.Load())
	if quiet >= w.idle {
		w.expire(&Error{Kind: KindIdle, Limit: w.idle})
		return
	}
	if w.end.Load() == nil {
		w.idleTimer.Reset(w.idle - quiet)
	}
}

// requestBody notes the request body's progress for the idle timeout.
type requestBody struct {
	stack.Body
	w *watch
}

func (b *requestBody) Read(p []byte) (int, error) {
	n, err := b.Body.Read(p)
	if n > 0 {
		b.w.touch()
	}
	return n, err
}

// responseBody ends the watch with the response body: in time, the timers
// stop; after a timeout, the failure the cancel caused below reads as the
// timeout.
type responseBody struct {
	stack.Body
	w *watch
}

func (b *responseBody) Read(p []byte) (int, error) {
	n, err := b.Body.Read(p)
	if n > 0 {
		b.w.touch()
	}
	if err != nil {
		if e := b.w.expired(); e != nil && err != io.EOF {
			b.w.count()
			err = e
		}
		b.w.finish()
	}
	return n, err
}

func (b *responseBody) Close() error {
	b.w.count()
	b.w.finish()
	return b.Body.Close()
}

// splicedBody is a responseBody an engine may splice beneath (no idle
// timeout to watch every read for): it only needs to see the end.
type splicedBody struct{ *responseBody }

func (b *splicedBody) Unwrap() stack.Body { return b.Body }

// withDeadline tells the layers below when the exchange's bound runs out;
// the watch's timer, not the context, enforces it (a context's own timer
// could not be stopped without cancelling it).
type withDeadline struct {
	context.Context
	deadline time.Time
}

func (c withDeadline) Deadline() (time.Time, bool) { return c.deadline, true }
