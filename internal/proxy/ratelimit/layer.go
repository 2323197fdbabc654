package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/skeinmesh/skein/internal/authz"
	"github.com/skeinmesh/skein/internal/proxy/metrics"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// Layer limits inbound requests by their port's RateLimit, read through
// lookup on every request so that a changed policy applies to the next one.
// A refused request returns an error wrapping stack.ErrRateLimited that
// names the Server and the limit, and is counted in
// inbound_http_local_ratelimit_total. A port whose policy cannot be had
// fails closed (the authorization layer above has already refused it).
func Layer(lookup authz.Lookup, reg *metrics.Registry) stack.Layer {
	return layerAt(lookup, reg, time.Now)
}

// layerAt is Layer on the clock now (a test's).
func layerAt(lookup authz.Lookup, reg *metrics.Registry, now func() time.Time) stack.Layer {
	servers := &servers{byPort: make(map[uint16]*server)}
	return func(next stack.Handler) stack.Handler {
		return stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
			port := req.Conn.OrigDst.Port()
			in, err := lookup.Inbound(ctx, port)
			if err != nil {
				req.Body.Close()
				return nil, fmt.Errorf("rate limits of port %d: %w", port, err)
			}
			if in.RateLimit == nil || isProbe(req, in) {
				servers.forget(port, in.RateLimit)
				return next.Serve(ctx, req)
			}
			lim := servers.limiter(port, in.Server)
			if refusal := lim.Allow(now(), req.Conn.ClientID, in.RateLimit); refusal != nil {
				req.Body.Close()
				reg.CountRateLimited(in.Server, refusal.Scope, req.Conn.ClientID)
				return nil, fmt.Errorf("%w by Server %s: %v", stack.ErrRateLimited, serverName(in), refusal)
			}
			return next.Serve(ctx, req)
		})
	}
}

// isProbe reports whether req is a kubelet probe of in's port (an
// unmeshed GET of one of its probe paths): probes are never rate limited,
// or a busy pod would be marked unready and lose its traffic altogether.
func isProbe(req *stack.Request, in *authz.Inbound) bool {
	return req.Conn.ClientID == "" && req.Method == "GET" && slices.Contains(in.ProbePaths, req.Path)
}

func serverName(in *authz.Inbound) string {
	if in.Server == "" {
		return fmt.Sprintf("(port %d)", in.Port)
	}
	return in.Server
}

// servers are the Limiters of the ports that have rate limits. Only ports
// whose policy has a RateLimit get one, so their number is bounded by the
// controller's configuration, not by the ports clients try.
type servers struct {
	mu     sync.RWMutex
	byPort map[uint16]*server
}

type server struct {
	name string
	lim  *Limiter
}

// limiter returns the Limiter of the Server owning port, a new one when the
// port changed hands (another Server's buckets do not carry over).
func (s *servers) limiter(port uint16, name string) *Limiter {
	s.mu.RLock()
	srv, ok := s.byPort[port]
	s.mu.RUnlock()
	if ok && srv.name == name {
		return srv.lim
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, ok = s.byPort[port]
	if !ok || srv.name != name {
		srv = &server{name: name, lim: NewLimiter(MaxIdentities)}
		s.byPort[port] = srv
	}
	return srv.lim
}

// forget drops the buckets of a port whose policy no longer limits it.
func (s *servers) forget(port uint16, limit *authz.RateLimit) {
	if limit != nil {
		return
	}
	s.mu.RLock()
	_, ok := s.byPort[port]
	s.mu.RUnlock()
	if !ok {
		return
	}
	s.mu.Lock()
	delete(s.byPort, port)
	s.mu.Unlock()
}
