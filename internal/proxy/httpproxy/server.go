package httpproxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits bound what one client can make the server hold.
const (
	// maxHeaderBytes caps a request's header block (HTTP/1) and header list
	// (HTTP/2); larger requests get 431 or a stream error.
	maxHeaderBytes = 64 << 10
	// readHeaderTimeout closes a client that trickles its request headers.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes keep-alive connections nobody uses.
	idleTimeout = 5 * time.Minute
)

// Server serves HTTP/1.x and HTTP/2 prior-knowledge connections that the
// proxy has already accepted and detected, one http.Server for all of them so
// that a graceful shutdown reaches every connection.
type Server struct {
	srv  *http.Server
	ln   *connListener
	done chan struct{}
	// handlers counts requests being handled, hijacked ones (tunnels)
	// included, which http.Server.Shutdown does not wait for.
	handlers sync.WaitGroup
	// stop ends every request's context: the end of the shutdown grace.
	stop context.CancelFunc
}

// NewServer starts serving h. Stop it with Shutdown.
func NewServer(h http.Handler, log *slog.Logger) *Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s := &Server{
		ln:   newConnListener(),
		done: make(chan struct{}),
	}
	base, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.handlers.Add(1)
			defer s.handlers.Done()
			h.ServeHTTP(w, r)
		}),
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(base, serverContextKey{}, base)
		},
		Protocols:         &protocols,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: 1000,
			// gRPC streams want more than the 64 KiB default window.
			MaxReceiveBufferPerStream:     1 << 20,
			MaxReceiveBufferPerConnection: 4<<20 - 1,
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ac, ok := c.(*acceptedConn); ok {
				return WithConnInfo(ctx, ac.info)
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.done)
		// Serve returns when the listener is closed by Shutdown.
		_ = s.srv.Serve(s.ln)
	}()
	return s
}

type serverContextKey struct{}

// serverContext returns the context of the server a request came through,
// which ends when the server's shutdown grace does; nil outside a Server.
func serverContext(ctx context.Context) context.Context {
	sc, _ := ctx.Value(serverContextKey{}).(context.Context)
	return sc
}

// ServeConn hands one detected connection to the server.
func (s *Server) ServeConn(c net.Conn, info *ConnInfo) error {
	return s.ln.push(&acceptedConn{Conn: c, info: info})
}

// Shutdown stops taking connections, tells HTTP/2 clients to go away, closes
// idle HTTP/1 connections, and waits for in-flight requests, streams and
// tunnels until ctx ends; then it closes whatever is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err == nil {
		// Only hijacked connections can be left: wait for their handlers.
		handled := make(chan struct{})
		go func() {
			s.handlers.Wait()
			close(handled)
		}()
		select {
		case <-handled:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		s.stop()
		err = errors.Join(err, s.srv.Close())
	}
	s.handlers.Wait()
	s.stop()
	<-s.done
	return err
}

// acceptedConn carries what the proxy learnt at accept time into the
// request contexts.
type acceptedConn struct {
	net.Conn
	info *ConnInfo
}

// CloseWrite lets tunnels half-close the client.
func (c *acceptedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// connListener is a net.Listener fed by the proxy's own accept loop.
type connListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnListener() *connListener {
	return &connListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

var errServerClosed = errors.New("http server is shut down")

func (l *connListener) push(c net.Conn) error {
	select {
	case l.conns <- c:
		return nil
	case <-l.closed:
		return errServerClosed
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.TCPAddr{} }
