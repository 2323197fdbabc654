package proxy

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/skeinmesh/skein/internal/admin"
	"github.com/skeinmesh/skein/internal/proxy/detect"
	"github.com/skeinmesh/skein/internal/proxy/tap"
)

// adminSniffTimeout bounds how long an admin connection may take to send
// its first bytes: the admin HTTP server's own header timeout.
const adminSniffTimeout = 5 * time.Second

// tapService is the tap the admin port serves, with the TLS that decides
// who may use it; nil TLS (a proxy without a certificate) serves no tap.
type tapService struct {
	tls    *tls.Config
	server *tap.Server
}

// serveAdminPort serves the admin port until ctx ends. Each connection's
// first bytes decide: a TLS ClientHello is the controller's tap, gRPC over
// mTLS with the proxy's current mesh certificate, whose handshake requires
// the controller's certificate; anything else is the plaintext admin HTTP
// server (/metrics, /ready, ...) as admin.Serve serves it. Without tap TLS
// a ClientHello is closed.
func serveAdminPort(ctx context.Context, ln net.Listener, cfg admin.Config, ts tapService, log *slog.Logger) error {
	httpConns, tapConns := newConnQueue(ln.Addr()), newConnQueue(ln.Addr())
	var dispatching sync.WaitGroup
	dispatching.Add(1)
	go func() {
		defer dispatching.Done()
		defer httpConns.Close()
		defer tapConns.Close()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed below, once admin.Serve returned
			}
			dispatching.Add(1)
			go func() {
				defer dispatching.Done()
				dispatchAdminConn(c, httpConns, tapConns, ts.tls != nil, log)
			}()
		}
	}()
	var grpcSrv *grpc.Server
	if ts.tls != nil {
		grpcSrv = grpc.NewServer(grpc.Creds(loggedHandshakes{credentials.NewTLS(ts.tls), log}),
			grpc.MaxConcurrentStreams(tap.MaxSessions))
		ts.server.Register(grpcSrv)
		go grpcSrv.Serve(tapConns) // returns once tapConns is closed
	}
	err := admin.Serve(ctx, httpConns, cfg)
	ln.Close()
	if grpcSrv != nil {
		// Tap streams last until their caller leaves: cut them.
		grpcSrv.Stop()
	}
	dispatching.Wait()
	return err
}

// dispatchAdminConn hands c to the tap or the HTTP server by its first
// bytes.
func dispatchAdminConn(c net.Conn, httpConns, tapConns *connQueue, serveTap bool, log *slog.Logger) {
	res, replay, err := detect.Detect(c, adminSniffTimeout)
	switch {
	case err != nil:
		replay.Close()
	case res.Protocol != detect.TLS:
		httpConns.push(replay)
	case serveTap:
		tapConns.push(replay)
	default:
		log.Info("admin port: closing a TLS connection: this proxy has no certificate, so it serves no tap", "client", c.RemoteAddr().String())
		replay.Close()
	}
}

// loggedHandshakes logs the clients the tap's TLS handshake refuses (no
// certificate, one the mesh did not issue, or another identity than the
// controller's).
type loggedHandshakes struct {
	credentials.TransportCredentials
	log *slog.Logger
}

func (l loggedHandshakes) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := l.TransportCredentials.ServerHandshake(c)
	if err != nil {
		l.log.Warn("tap refused a client at the TLS handshake", "client", c.RemoteAddr().String(), "err", err)
	}
	return conn, info, err
}

// connQueue is a net.Listener fed by the admin port's dispatcher.
type connQueue struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// push hands c to the queue's server, or closes it once the queue is.
func (q *connQueue) push(c net.Conn) {
	select {
	case q.conns <- c:
	case <-q.done:
		c.Close()
	}
}
