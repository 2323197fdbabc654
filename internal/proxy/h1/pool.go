package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// Client sends requests to one HTTP/1.1 upstream over a pool of keep-alive
// connections. A connection goes back to the pool only once its request
// was fully written and its response read to the end.
type Client struct {
	dial func(ctx context.Context) (net.Conn, error)
	cfg  Config
	log  *slog.Logger

	mu     sync.Mutex
	idle   []*clientConn // most recently used last
	all    map[*clientConn]struct{}
	closed bool
}

// NewClient returns a Client that opens connections with dial.
func NewClient(dial func(ctx context.Context) (net.Conn, error), cfg Config, log *slog.Logger) *Client {
	return &Client{dial: dial, cfg: cfg.withDefaults(), log: log, all: make(map[*clientConn]struct{})}
}

var errClientClosed = errors.New("HTTP/1 client closed")

// clientConn is one upstream connection and the request it carries.
type clientConn struct {
	client    *Client
	conn      net.Conn
	br        *bufio.Reader
	head      []byte // reused response head buffer
	reused    bool
	idleSince time.Time   // c.mu
	idleTimer *time.Timer // c.mu; armed while idleArmed, see put
	idleArmed bool        // c.mu

	// Per request.
	stopCancel func() bool // unhooks the request's context
	failFn     func()      // cc.fail, made once
	// pending counts the request's parts still on the connection (writing
	// the request, reading the response); the last to finish hands the
	// connection back.
	pending  atomic.Int32
	broken   atomic.Bool // must not carry another request
	readDone atomic.Bool // the response body ended or was closed
}

// get returns an idle connection or dials a new one; dial errors are
// stack.NotSent.
func (c *Client) get(ctx context.Context) (*clientConn, error) {
	c.mu.Lock()
	for n := len(c.idle); n > 0; n = len(c.idle) {
		cc := c.idle[n-1]
		c.idle[n-1] = nil
		c.idle = c.idle[:n-1]
		idleFor := time.Since(cc.idleSince)
		c.mu.Unlock()
		if idleFor >= staleCheckAfter && (cc.br.Buffered() > 0 || closedByPeer(cc.conn)) {
			c.drop(cc)
			c.mu.Lock()
			continue
		}
		cc.reused = true
		return cc, nil
	}
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, stack.NotSent(errClientClosed)
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, stack.NotSent(fmt.Errorf("connecting: %w", err))
	}
	cc := &clientConn{client: c, conn: conn, br: bufio.NewReaderSize(conn, 4<<10)}
	cc.failFn = cc.fail
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		_ = conn.Close()
		return nil, stack.NotSent(errClientClosed)
	}
	c.all[cc] = struct{}{}
	return cc, nil
}

// put hands back a connection whose request is over: to the pool if it
// can carry another, else closed.
func (c *Client) put(cc *clientConn) {
	if cc.broken.Load() {
		c.drop(cc)
		return
	}
	c.mu.Lock()
	if c.closed || len(c.idle) >= c.cfg.MaxIdleConns {
		c.mu.Unlock()
		c.drop(cc)
		return
	}
	c.idle = append(c.idle, cc)
	cc.idleSince = time.Now()
	// The idle timer is armed once and left running while the connection
	// is taken and handed back: expire re-arms it from idleSince. Stopping
	// and resetting it around every request cost two runtime timer
	// operations per request.
	if !cc.idleArmed {
		cc.idleArmed = true
		if cc.idleTimer == nil {
			cc.idleTimer = time.AfterFunc(c.cfg.PoolIdleTimeout, func() { c.expire(cc) })
		} else {
			cc.idleTimer.Reset(c.cfg.PoolIdleTimeout)
		}
	}
	c.mu.Unlock()
}

// expire runs when cc's idle timer fires: it closes cc if cc has been idle
// for PoolIdleTimeout, re-arms the timer for the rest if cc is idle but
// was handed back since, and disarms it if cc is in use (put arms it
// again).
func (c *Client) expire(cc *clientConn) {
	c.mu.Lock()
	for i, idle := range c.idle {
		if idle != cc {
			continue
		}
		if left := c.cfg.PoolIdleTimeout - time.Since(cc.idleSince); left > 0 {
			cc.idleTimer.Reset(left)
			c.mu.Unlock()
			return
		}
		cc.idleArmed = false
		c.idle = append(c.idle[:i], c.idle[i+1:]...)
		c.mu.Unlock()
		c.drop(cc)
		return
	}
	cc.idleArmed = false
	c.mu.Unlock()
}

// drop closes cc for good.
func (c *Client) drop(cc *clientConn) {
	_ = cc.conn.Close()
	c.mu.Lock()
	if cc.idleTimer != nil {
		cc.idleTimer.Stop() // or it would hold cc until it fires
	}
	delete(c.all, cc)
	c.mu.Unlock()
}

// CloseIdle closes the connections with nothing in flight and reports
// whether none is left.
func (c *Client) CloseIdle() (empty bool) {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, cc := range idle {
		c.drop(cc)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.all) == 0
}

// Close closes every connection, busy ones included; later requests fail.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	c.idle = nil
	all := make([]*clientConn, 0, len(c.all))
	for cc := range c.all {
		all = append(all, cc)
	}
	c.mu.Unlock()
	for _, cc := range all {
		c.drop(cc)
	}
}

// release ends one part of the request; the last hands the connection
// back.
func (cc *clientConn) release() {
	if cc.pending.Add(-1) != 0 {
		return
	}
	if !cc.stopCancel() {
		// The request's context ended: the connection was closed.
		cc.broken.Store(true)
	}
	cc.client.put(cc)
}

// fail marks the connection unusable and closes it, so that the upstream
// sees the request abandoned and any reader or writer on it stops.
func (cc *clientConn) fail() {
	cc.broken.Store(true)
	_ = cc.conn.Close()
}
