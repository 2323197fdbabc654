package authorize

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/proxy/tunnel"
)

// recheckTimeout bounds the lookup of one port's policy while open
// connections are checked again.
const recheckTimeout = time.Second

// entry is one open inbound connection (or tunnel) that a policy change
// may close.
type entry struct {
	ci *stack.ConnInfo
	// kind says what the policy must still allow for the entry to stay.
	kind entryKind
	// req is a tunnel's request (CONNECT or upgrade), decided again.
	req *authz.Request
	// close ends the entry: closes an opaque connection or a tunnel, or
	// makes an HTTP connection stop taking requests.
	close  func()
	closed atomic.Bool
}

type entryKind int

const (
	opaqueConn entryKind = iota // Decide(client, nil) must allow it
	httpConn                    // the client may still call something (MayCall)
	tunnelReq                   // its request must still be allowed
)

// registry holds the open inbound connections the Authorizer allowed.
// It holds one entry per open connection or tunnel, so the inbound
// listener's connection caps (-max-connections, per source) bound it.
type registry struct {
	mu sync.Mutex
	m  map[*entry]struct{}
}

func newRegistry() *registry { return &registry{m: make(map[*entry]struct{})} }

func (r *registry) add(e *entry) (remove func()) {
	r.mu.Lock()
	r.m[e] = struct{}{}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.m, e)
		r.mu.Unlock()
	}
}

func (r *registry) snapshot() []*entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*entry, 0, len(r.m))
	for e := range r.m {
		out = append(out, e)
	}
	return out
}

// TrackOpaque keeps an allowed opaque connection until untrack is called
// (when it ends); close ends it if a policy change denies it.
func (a *Authorizer) TrackOpaque(ci *stack.ConnInfo, close func()) (untrack func()) {
	return a.conns.add(&entry{ci: ci, kind: opaqueConn, close: close})
}

// TrackHTTP keeps an HTTP connection until untrack is called; drain makes
// it stop taking requests (HTTP/2 GOAWAY, HTTP/1 close after the current
// response) once its client may call nothing on the port any more.
func (a *Authorizer) TrackHTTP(ci *stack.ConnInfo, drain func()) (untrack func()) {
	return a.conns.add(&entry{ci: ci, kind: httpConn, close: drain})
}

// serveTunnel passes an authorized CONNECT or upgrade on and keeps the
// tunnel it may open, so that a policy that no longer allows its request
// closes it.
func (a *Authorizer) serveTunnel(ctx context.Context, next stack.Handler, req *stack.Request) (*stack.Response, error) {
	down := req.Body
	r := request(req.Method, req.Path, req.Header.Clone())
	resp, err := next.Serve(ctx, req)
	if err != nil || !tunnel.IsTunnel(req, resp) {
		return resp, err
	}
	up := resp.Body
	untrack := a.conns.add(&entry{ci: req.Conn, kind: tunnelReq, req: r, close: func() {
		down.Close()
		up.Close()
	}})
	resp.Body = &untrackingBody{Body: up, untrack: untrack}
	return resp, nil
}

// untrackingBody forgets its tunnel once the engine is done with it.
type untrackingBody struct {
	stack.Body
	untrack func()
	once    sync.Once
}

func (b *untrackingBody) Close() error {
	b.once.Do(b.untrack)
	return b.Body.Close()
}

// Run closes the open connections a policy change no longer allows, until
// ctx ends. Changes come from the Lookup's Watch; a burst of them is
// checked once.
func (a *Authorizer) Run(ctx context.Context) {
	changed := make(chan struct{}, 1)
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		a.lookup.Watch(ctx, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}()
	for {
		select {
		case <-ctx.Done():
			<-watching
			return
		case <-changed:
			a.recheck(ctx)
		}
	}
}

// recheck decides every open connection again under the current
// policies and closes those no longer allowed. A port whose policy cannot
// be had is left alone: its new requests and connections fail closed, but
// a control plane that is away does not cut what was allowed.
func (a *Authorizer) recheck(ctx context.Context) {
	policies := make(map[uint16]*authz.Inbound)
	unknown := make(map[uint16]bool)
	for _, e := range a.conns.snapshot() {
		port := e.ci.OrigDst.Port()
		in, ok := policies[port]
		if !ok && !unknown[port] {
			lctx, cancel := context.WithTimeout(ctx, recheckTimeout)
			var err error
			in, err = a.lookup.Inbound(lctx, port)
			cancel()
			if err != nil {
				unknown[port] = true
				continue
			}
			policies[port] = in
		}
		if unknown[port] || a.stillAllowed(in, e) || !e.closed.CompareAndSwap(false, true) {
			continue
		}
		d := in.Decide(client(e.ci), e.req)
		a.logs.info("close:"+d.Server, "closing a connection the inbound policy no longer allows",
			"server", d.Server, "client", e.ci.Client.Addr().String(), "client_id", e.ci.ClientID,
			"port", port, "kind", e.kind.String(), "reason", d.Reason())
		e.close()
	}
}

func (a *Authorizer) stillAllowed(in *authz.Inbound, e *entry) bool {
	c := client(e.ci)
	switch e.kind {
	case httpConn:
		return in.MayCall(c)
	case tunnelReq:
		return in.Decide(c, e.req).Allowed
	}
	return in.Decide(c, nil).Allowed
}

func (k entryKind) String() string {
	switch k {
	case httpConn:
		return "http"
	case tunnelReq:
		return "tunnel"
	}
	return "opaque"
}
