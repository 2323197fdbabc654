package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/skeinmesh/skein/internal/proxy/balance"
	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// Resolve is the resolve layer: it finds the request's destination, by
// req.Info.Backend when a layer above chose one, else by its authority when
// discovery knows that name, else by the address the client
// dialled, and fails closed (see resolve). It records the destination in
// req.Info.Service for the balance layer and the metrics; a destination
// discovery knows neither way goes, unbalanced, to the original address
// (req.Info.Endpoint), as the client sent it.
//
// A backend the route layer picked (req.Info.Backend) is resolved instead:
// it names a Service port discovery knows, and a backend discovery does not
// know fails the request (503) rather than going where the client sent it.
func (u *Upstream) Resolve(next stack.Handler) stack.Handler {
	return stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		if req.Info.Backend != "" {
			return u.resolveBackend(ctx, req, next)
		}
		origDst := req.Conn.OrigDst
		name := req.Info.Backend // the route layer's (or a mirror's) choice
		if name == "" {
			name = resolveAuthority(req, origDst)
		}
		d, err := u.resolve(ctx, name, origDst)
		if err != nil {
			req.Body.Close()
			return nil, err
		}
		if d == nil {
			if !origDst.IsValid() {
				req.Body.Close()
				return nil, errors.New("no original destination to forward to")
			}
			req.Info.Service = ""
			req.Info.Endpoint = discovery.Endpoint{Addr: origDst}
			return next.Serve(ctx, req)
		}
		req.Info.Service = d.key
		return next.Serve(ctx, req)
	})
}

// resolveBackend resolves the backend the route layer chose for req.
func (u *Upstream) resolveBackend(ctx context.Context, req *stack.Request, next stack.Handler) (*stack.Response, error) {
	d, err := u.resolve(ctx, req.Info.Backend, netip.AddrPort{})
	if err == nil && d == nil {
		err = fmt.Errorf("backend %s: discovery does not know it: %w", req.Info.Backend, stack.ErrNoEndpoints)
	}
	if err != nil {
		req.Body.Close()
		return nil, err
	}
	req.Info.Service = d.key
	return next.Serve(ctx, req)
}

// DestinationKeys are the keys the resolve layer looks req up by, in its
// order: the authority with the port the client connected to ("" for a
// CONNECT tunnel, or no authority with a port), then the original
// destination address ("" when unknown). The route layer looks the
// destination's policy up by the same keys.
func DestinationKeys(req *stack.Request) (name, addr string) {
	origDst := req.Conn.OrigDst
	if name = resolveAuthority(req, origDst); !hasPort(name) {
		name = ""
	}
	return name, req.Conn.OrigDstString()
}

// resolveAuthority is the name to resolve req by. A CONNECT's authority
// names the tunnel's far end, not the server the client connected to (an
// HTTP proxy): such a request is resolved by its address alone, as an
// opaque connection is. An extended CONNECT (WebSocket over HTTP/2) names
// its server.
func resolveAuthority(req *stack.Request, origDst netip.AddrPort) string {
	if req.Method == "CONNECT" && req.Protocol == "" {
		return ""
	}
	return authorityWithPort(req.Authority, origDst)
}

// Balance is the balance layer: for a request the resolve layer found a
// destination for, it picks an endpoint (req.Info.Endpoint) and hands the
// request on; when that fails before a byte was sent (stack.IsNotSent) it
// tries another endpoint, up to maxConnectAttempts in all. The balancer
// learns the request's latency from the moment it had a connection
// (req.GotConn) to its response's headers, and its outcome when the
// response body ends (gRPC: with the trailers' status), as the request's
// breaker classifies it; a request of a route with a breaker of its own is
// balanced in that route's scope (see breakers.go).
func (u *Upstream) Balance(next stack.Handler) stack.Handler {
	return stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		if req.Info.Service == "" {
			return next.Serve(ctx, req) // passthrough
		}
		return u.balance(ctx, req, u.dests.get(req.Info.Service), next)
	})
}

func (u *Upstream) balance(ctx context.Context, req *stack.Request, d *destination, next stack.Handler) (*stack.Response, error) {
	body := newResendableBody(req)
	scope := d.breakers.scope(&req.Info)
	var avoid []netip.AddrPort
	for attempt := 1; ; attempt++ {
		h, err := d.balancer.PickRoute(ctx, scope.route, avoid...)
		if err != nil {
			body.settle()
			req.Body.Close()
			return nil, pickError(d, err)
		}
		ep := h.Endpoint()
		req.Info.Endpoint = ep
		req.Info.ServerID = ""
		// The latency sample starts once a connection is there: connecting
		// (and a TLS handshake) is not the endpoint being slow to answer.
		req.GotConn = h.Sending
		resp, err := next.Serve(ctx, req)
		if err != nil {
			h.Done(true)
			if stack.IsNotSent(err) && !body.started() && attempt < maxConnectAttempts {
				u.log.Debug("connect failed, trying another endpoint", "endpoint", ep.Addr, "err", err)
				avoid = append(avoid, ep.Addr)
				body.resend()
				continue
			}
			body.settle()
			return nil, fmt.Errorf("endpoint %s: %w", ep.Addr, err)
		}
		body.settle()
		h.Responded()
		failed := scope.failures.Failed(resp.Status, resp.Header.Get("grpc-status"))
		if resp.Body == stack.NoBody {
			// Nothing to wait for; and a wrapper would hide from the engine
			// that the answer ends with its headers (gRPC trailers-only).
			h.Done(failed)
			return resp, nil
		}
		resp.Body = &balancedBody{Body: resp.Body, handle: h, failures: scope.failures, status: resp.Status, failed: failed}
		return resp, nil
	}
}

// pickError is the error of a request the balancer found no endpoint for.
// All endpoints ejected is told as such, with nothing else (see the error
// table in docs/proxy.md).
func pickError(d *destination, err error) error {
	switch {
	case errors.Is(err, balance.ErrNoEndpoints):
		return fmt.Errorf("%s: %w", d.key, stack.ErrNoEndpoints)
	case errors.Is(err, balance.ErrAllEjected):
		return stack.ErrAllEjected
	}
	return err
}

// balancedBody ends the balancer's handle once the response body ends,
// with the request's outcome (gRPC: the trailers' status). A tunnel's
// body ends with the tunnel: it counts as in flight until then.
type balancedBody struct {
	stack.Body
	handle   *balance.Handle
	failures *balance.FailureClass
	status   int
	failed   bool // by the response's headers
}

func (b *balancedBody) Read(p []byte) (int, error) {
	n, err := b.Body.Read(p)
	if err == io.EOF {
		b.ended(b.Body.Trailers(), nil)
	} else if err != nil {
		b.ended(nil, err)
	}
	return n, err
}

// Unwrap implements stack.Unwrapper: the body is only watched for its end.
func (b *balancedBody) Unwrap() stack.Body { return b.Body }

// ended ends the handle: at the body's end with the trailers' outcome, on
// a failure as failed unless the client cancelled.
func (b *balancedBody) ended(trailers stack.Header, err error) {
	switch {
	case err == nil:
		b.handle.Done(b.failed || b.failures.Failed(b.status, trailers.Get("grpc-status")))
	case !errors.Is(err, context.Canceled):
		b.handle.Done(true)
	}
}

func (b *balancedBody) Close() error {
	b.handle.Done(b.failed) // does nothing after the first Done
	return b.Body.Close()
}

// resendableBody lets a request be sent to another endpoint after a
// failure before any of it was sent: an engine that gives up on a
// connection closes the request body even when it never read it, so Close
// is held back until something was read or the balance layer settles.
type resendableBody struct {
	stack.Body
	read atomic.Bool

	mu       sync.Mutex
	settled  bool
	closeAsk bool
}

// newResendableBody wraps req.Body in place; nil for a request without a
// body, which has nothing to resend.
func newResendableBody(req *stack.Request) *resendableBody {
	if req.Body == stack.NoBody {
		return nil
	}
	b := &resendableBody{Body: req.Body}
	req.Body = b
	return b
}

func (b *resendableBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.Body.Read(p)
}

// Unwrap implements stack.Unwrapper: the engine takes the bytes, so the
// body counts as read (it cannot be resent).
func (b *resendableBody) Unwrap() stack.Body {
	b.read.Store(true)
	return b.Body
}

func (b *resendableBody) Close() error {
	if b.read.Load() {
		return b.Body.Close()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.settled {
		b.closeAsk = true
		return nil
	}
	return b.Body.Close()
}

// settle says the body will not be resent: a Close held back happens now,
// later ones at once.
func (b *resendableBody) settle() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.settled = true
	if b.closeAsk {
		b.Body.Close()
	}
}

// resend forgets a Close asked by the engine that gave up: the next one
// reads the body afresh.
func (b *resendableBody) resend() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.closeAsk = false
	b.mu.Unlock()
}

// started reports whether any of the body was read to be sent; nil has
// nothing to send.
func (b *resendableBody) started() bool {
	return b != nil && b.read.Load()
}
