package h1

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// Server serves HTTP/1.x client connections: each request, one after
// another on a connection, goes to the Handler, and its response is
// written back before the next request is read.
type Server struct {
	handler stack.Handler
	cfg     Config
	log     *slog.Logger

	// base is every request's ancestor context; stop ends it when the
	// shutdown grace ends.
	base context.Context
	stop context.CancelFunc

	mu       sync.Mutex
	conns    map[*serverConn]struct{}
	shutting bool
	draining atomic.Bool   // shutting, read without the lock
	gone     chan struct{} // closed when shutting and conns is empty
}

// NewServer returns a Server handing requests to h.
func NewServer(h stack.Handler, cfg Config, log *slog.Logger) *Server {
	base, stop := context.WithCancel(context.Background())
	return &Server{
		handler: h,
		cfg:     cfg.withDefaults(),
		log:     log,
		base:    base,
		stop:    stop,
		conns:   make(map[*serverConn]struct{}),
		gone:    make(chan struct{}),
	}
}

// ServeConn serves c until it ends; the caller's goroutine reads it. ci is
// shared by all its requests. After Shutdown, c is closed at once.
func (s *Server) ServeConn(c net.Conn, ci *stack.ConnInfo) {
	if ci == nil {
		ci = &stack.ConnInfo{}
	}
	sc := &serverConn{srv: s, conn: c, ci: ci, br: bufio.NewReaderSize(c, 4<<10), bgDone: make(chan struct{}, 1)}
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		_ = c.Close()
		return
	}
	sc.idle = true
	s.conns[sc] = struct{}{}
	s.mu.Unlock()
	sc.ctx, sc.cancel = context.WithCancel(s.base)
	defer func() {
		sc.stopBackgroundReads()
		sc.cancel()
		_ = c.Close()
		s.mu.Lock()
		delete(s.conns, sc)
		if s.shutting && len(s.conns) == 0 {
			close(s.gone)
		}
		s.mu.Unlock()
	}()
	sc.serve()
}

// Shutdown stops reading new requests: idle connections are closed at
// once, busy ones after their response. It waits for in-flight requests
// and tunnels until ctx ends, then cancels every request's context and
// closes every connection; it returns ctx.Err() if it had to cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.shutting {
		s.shutting = true
		s.draining.Store(true)
		if len(s.conns) == 0 {
			close(s.gone)
		}
	}
	for c := range s.conns {
		if c.idle {
			_ = c.conn.Close()
		}
	}
	s.mu.Unlock()
	select {
	case <-s.gone:
		s.stop()
		return nil
	case <-ctx.Done():
	}
	s.stop()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.conn.Close()
	}
	s.mu.Unlock()
	<-s.gone
	return ctx.Err()
}

// DrainConn stops taking requests on the connections served with ci (the
// inbound policy no longer allows their client): an idle one is closed at
// once, a busy one after the response it is writing, with "Connection:
// close". A request in flight is not cut. A tunnel is left to whoever
// watches it (the authorization layer tracks tunnels itself).
func (s *Server) DrainConn(ci *stack.ConnInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.ci != ci {
			continue
		}
		c.drain.Store(true)
		if c.idle {
			_ = c.conn.Close()
		}
	}
}

// setActive marks c busy with a request; false when the server is shutting
// down, or c drained, and c must close instead.
func (s *Server) setActive(c *serverConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.idle = false
	return !s.shutting && !c.drain.Load()
}

// setIdle marks c waiting for its next request; false when the server is
// shutting down, or c drained, and c must close instead.
func (s *Server) setIdle(c *serverConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.idle = true
	return !s.shutting && !c.drain.Load()
}
