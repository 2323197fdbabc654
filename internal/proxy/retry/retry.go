// Package retry is the outbound layer that sends a request again when an
// attempt failed in a way its route's rule says to retry (HTTP statuses,
// gRPC codes read from headers and trailers, connection resets), within
// the rule's limit and the destination's retry budget, with back-off and
// a per-try timeout. It replays request bodies up to 64 KiB byte for byte
// and never retries once any of a response reached the client. It does
// not choose rules or endpoints: the route layer above sets
// RequestInfo.Rule and Policy, and the resolve and balance layers below
// pick an endpoint afresh for every attempt.
package retry

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/routes"
)

// Layer is the retry layer. Requests without a rule (no policy) pass
// through untouched; requests with one have their attempts counted in
// route_actual_response_total, and, when the rule retries and the request
// may be retried (see mayRetry), are retried as the package comment says.
// reg may be nil (no metrics).
func Layer(budgets *Budgets, reg *metrics.Registry, log *slog.Logger) stack.Layer {
	return func(next stack.Handler) stack.Handler {
		return &retrier{next: next, budgets: budgets, reg: reg, log: log}
	}
}

type retrier struct {
	next    stack.Handler
	budgets *Budgets
	reg     *metrics.Registry
	log     *slog.Logger
}

func (l *retrier) Serve(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	rule, policy := req.Info.Rule, req.Info.Policy
	if rule == nil || policy == nil {
		return l.next.Serve(ctx, req)
	}
	rec := l.reg.Route(metrics.RouteLabels{Direction: metrics.DirectionOutbound,
		Service: policy.Service, Port: policy.Port, RouteName: req.Info.Route})
	if !mayRetry(req, rule.Retry) || bodyTooLong(req) {
		resp, err := l.next.Serve(ctx, req)
		return recordAttempt(rec, false, resp, err), err
	}
	return l.serveRetrying(ctx, req, rule, l.budgets.For(policy), rec)
}

// bodyTooLong reports whether req says its body is longer than what is
// kept for replay: it is streamed as usual and not retried.
func bodyTooLong(req *stack.Request) bool {
	cl := req.Header.Get("content-length")
	if cl == "" {
		return false
	}
	n, err := strconv.ParseInt(cl, 10, 64)
	return err != nil || n > MaxBufferedBody
}

// attempt is one try of a request and what came of it.
type attempt struct {
	n      int // 0 for the first
	req    *stack.Request
	resp   *stack.Response
	err    error
	ctx    context.Context
	cancel context.CancelCauseFunc // nil without a per-try timeout
	timer  *time.Timer
	// grpcStatus is the answer's gRPC status once known; known says it is
	// (from headers or held trailers), or the answer is not gRPC.
	grpcStatus string
	known      bool
}

// errPerTryTimeout ends an attempt whose per-try timeout expired; a last
// attempt that ends so is answered 504 / DEADLINE_EXCEEDED.
var errPerTryTimeout = fmt.Errorf("per-try timeout: %w", context.DeadlineExceeded)

func (l *retrier) serveRetrying(ctx context.Context, req *stack.Request, rule *routes.Rule, budget *Budget, rec *metrics.RouteRecorder) (*stack.Response, error) {
	r := rule.Retry
	budget.Deposit()
	perTry := r.PerTry
	if perTry <= 0 {
		perTry = rule.Timeouts.BackendRequest
	}
	// Every attempt is sent as the client sent the request: the same
	// header fields (layers below may change their copy) and body bytes.
	base, header := *req, req.Header.Clone()
	var replay *replayBuffer
	var body *replayReader
	if req.Body != stack.NoBody {
		replay = newReplayBuffer(req.Body)
		body = replay.next()
	}
	for n := 0; ; n++ {
		a := &attempt{n: n, req: req}
		if n > 0 {
			next := base
			next.Header = header.Clone()
			a.req = &next
		}
		if body != nil {
			a.req.Body = body
		}
		l.send(ctx, a, perTry)
		failed := l.decide(ctx, a, r, replay)
		a.record(rec)
		retry := failed && l.mayRetryAgain(a, r, replay, budget, rec)
		if retry && replay != nil {
			// Abandons this attempt's body; nil when the body outgrew the
			// buffer since mayRetryAgain looked.
			body = replay.next()
			retry = body != nil
		}
		if !retry {
			replay.settle()
			req.Info = a.req.Info
			return l.finish(a, rec)
		}
		l.abandon(a)
		rec.Retry(metrics.RetryAttempted)
		if err := sleep(ctx, backoff(n+1, r.BackoffBase, r.BackoffMax, nil)); err != nil {
			replay.settle()
			return nil, err
		}
	}
}

// send makes the attempt, under its per-try timeout if there is one.
func (l *retrier) send(ctx context.Context, a *attempt, perTry time.Duration) {
	a.ctx = ctx
	if perTry > 0 {
		a.ctx, a.cancel = context.WithCancelCause(ctx)
		a.timer = time.AfterFunc(perTry, func() { a.cancel(errPerTryTimeout) })
	}
	a.resp, a.err = l.next.Serve(a.ctx, a.req)
}

// expired reports whether the attempt's per-try timeout ended it.
func (a *attempt) expired() bool {
	return a.cancel != nil && context.Cause(a.ctx) == errPerTryTimeout
}

// decide reads the attempt's answer and says whether it failed in a way
// the rule retries. A gRPC answer whose status comes in trailers is held
// (up to MaxBufferedBody) until they arrive, when the rule retries gRPC
// codes, unless it brings data while the request is still being sent (see
// holdBody).
func (l *retrier) decide(ctx context.Context, a *attempt, r *routes.Retry, replay *replayBuffer) bool {
	if a.err != nil {
		if a.expired() {
			a.err = errPerTryTimeout
		}
		return retryableError(ctx, r, a.err, a.expired())
	}
	resp := a.resp
	a.grpcStatus = resp.Header.Get("grpc-status")
	isGRPC := stack.IsGRPC(resp.Header.Get("content-type"))
	a.known = a.grpcStatus != "" || !isGRPC || resp.Body == stack.NoBody
	if retryableStatus(r, resp.Status) || retryableGRPC(r, a.grpcStatus) {
		return true
	}
	if a.known || len(r.GRPC) == 0 {
		return false
	}
	h := holdBody(resp.Body, func() bool { return !replay.complete() })
	switch {
	case h.err != nil:
		resp.Body.Close()
		a.resp, a.err = nil, h.err
		if a.expired() {
			a.err = errPerTryTimeout
		}
		return retryableError(ctx, r, a.err, a.expired())
	case !h.complete:
		resp.Body = h.body // released: too long to hold, never retried
		return false
	}
	resp.Body = h.body
	a.grpcStatus, a.known = h.trailers.Get("grpc-status"), true
	return retryableGRPC(r, a.grpcStatus)
}

// mayRetryAgain says whether a failed attempt is followed by another,
// counting why not when the limit or the budget says no.
func (l *retrier) mayRetryAgain(a *attempt, r *routes.Retry, replay *replayBuffer, budget *Budget, rec *metrics.RouteRecorder) bool {
	switch {
	case a.n >= limit(r):
		rec.Retry(metrics.RetryLimitReached)
		return false
	case !replay.replayable():
		l.log.Debug("not retrying: the request body is longer than the replay buffer", "route", a.req.Info.Route)
		return false
	case !budget.Withdraw():
		rec.Retry(metrics.RetryBudgetExhausted)
		return false
	}
	return true
}

// abandon drops a failed attempt that is being retried.
func (l *retrier) abandon(a *attempt) {
	if a.resp != nil {
		a.resp.Body.Close()
	}
	if a.cancel != nil {
		a.timer.Stop()
		a.cancel(errAbandoned)
	}
}

// finish hands the last attempt's answer to the client.
func (l *retrier) finish(a *attempt, rec *metrics.RouteRecorder) (*stack.Response, error) {
	if a.err != nil {
		if a.cancel != nil {
			a.timer.Stop()
			a.cancel(nil)
		}
		return nil, a.err
	}
	if a.n > 0 && !metrics.IsFailure(a.resp.Status, a.grpcStatus) {
		rec.Retry(metrics.RetrySucceeded)
	}
	if a.cancel != nil {
		// The per-try timeout covers the attempt until its answer is
		// decided; the body then streams under the request's own context.
		a.timer.Stop()
		a.resp.Body = &cancelOnEnd{Body: a.resp.Body, cancel: a.cancel}
	}
	return a.resp, nil
}

// record counts the attempt in route_actual_response_total: now when its
// outcome is known, else when its body ends.
func (a *attempt) record(rec *metrics.RouteRecorder) {
	switch {
	case rec == nil:
	case a.resp == nil:
		rec.Attempt(a.n > 0, 0, "")
	case a.known:
		rec.Attempt(a.n > 0, a.resp.Status, a.grpcStatus)
	default:
		a.resp.Body = &attemptBody{Body: a.resp.Body, rec: rec, retry: a.n > 0, status: a.resp.Status}
	}
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		// ctx.Err() tells the errors layer a cancel from a timeout; the
		// cause (a timeout layer's reason) goes with it.
		if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
			return fmt.Errorf("waiting to retry: %w: %w", cause, ctx.Err())
		}
		return fmt.Errorf("waiting to retry: %w", ctx.Err())
	case <-t.C:
		return nil
	}
}

// recordAttempt counts an attempt's outcome in route_actual_response_total,
// at once when its answer's status is known, else when its body ends (gRPC
// trailers); it returns the response to give on.
func recordAttempt(rec *metrics.RouteRecorder, retry bool, resp *stack.Response, err error) *stack.Response {
	if rec == nil {
		return resp
	}
	if err != nil || resp == nil {
		rec.Attempt(retry, 0, "")
		return resp
	}
	grpc := resp.Header.Get("grpc-status")
	if grpc != "" || resp.Body == stack.NoBody || !stack.IsGRPC(resp.Header.Get("content-type")) {
		rec.Attempt(retry, resp.Status, grpc)
		return resp
	}
	resp.Body = &attemptBody{Body: resp.Body, rec: rec, retry: retry, status: resp.Status}
	return resp
}
