// Package tcp forwards bytes opaquely between a downstream (client) connection
// and an upstream (server) connection, with TCP half-close, live byte
// counters and an optional idle timeout. It knows nothing of the protocol
// carried; detection and HTTP live elsewhere.
package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Counters receives byte counts as they flow, so that the metrics of a
// long-lived connection move while it is open. "Read" is bytes read from the
// downstream client; "write" is bytes written to it.
type Counters interface {
	AddRead(n int)
	AddWrite(n int)
}

// Stats are the totals of one forwarded connection.
type Stats struct {
	Read    int64 // bytes read from downstream (and sent upstream)
	Written int64 // bytes written to downstream (received from upstream)
}

// ErrIdleTimeout ends a forwarding in which no byte moved either way for the
// idle timeout.
var ErrIdleTimeout = errors.New("connection idle timeout")

// Option tunes Forward.
type Option func(*options)

type options struct {
	idleTimeout time.Duration
}

// WithIdleTimeout closes both connections when no byte has moved in either
// direction for d (and a blocked write counts as no movement).
func WithIdleTimeout(d time.Duration) Option {
	return func(o *options) { o.idleTimeout = d }
}

// Forward copies bytes both ways between downstream and upstream until both
// directions are done, then closes both connections.
//
// When one side reaches EOF, Forward half-closes the other side (CloseWrite,
// if the connection has it) and keeps copying the other direction, so
// request/response exchanges that rely on half-close work. A real error in
// either direction, ctx's cancellation or the idle timeout closes both
// connections at once. Forward returns the bytes moved each way and the first
// real error (EOF is not one), ctx.Err() if ctx ended it, or ErrIdleTimeout.
//
// With c == nil and no idle timeout, data moves with io.Copy, which lets the
// kernel splice between two *net.TCPConn; otherwise it moves through a pooled
// 32 KiB buffer per direction so that every read can be counted at once.
func Forward(ctx context.Context, downstream, upstream net.Conn, c Counters, opts ...Option) (Stats, error) {
	f := &forwarding{downstream: downstream, upstream: upstream}
	for _, opt := range opts {
		opt(&f.options)
	}
	if f.idleTimeout > 0 {
		f.touch()
		f.mu.Lock()
		f.watchdog = time.AfterFunc(f.idleTimeout, f.checkIdle)
		f.mu.Unlock()
		defer f.watchdog.Stop()
	}
	stop := context.AfterFunc(ctx, func() { f.abort(nil) })
	defer stop()

	up := direction{name: "downstream to upstream", src: downstream, dst: upstream}
	down := direction{name: "upstream to downstream", src: upstream, dst: downstream}
	if c != nil {
		up.onRead = c.AddRead
		down.onWrite = c.AddWrite
	}
	var stats Stats
	var wg sync.WaitGroup
	wg.Go(func() { stats.Read, _ = f.pump(up) })
	_, stats.Written = f.pump(down)
	wg.Wait()

	f.abort(nil)
	if err := f.firstError(); err != nil {
		return stats, err
	}
	return stats, ctx.Err()
}

// forwarding is the state shared by a connection's two directions.
type forwarding struct {
	options
	downstream, upstream net.Conn
	lastActivity         atomic.Int64 // unix nanoseconds; for the idle timeout

	mu       sync.Mutex
	stopped  bool        // both conns closed: later errors are consequences
	err      error       // the first real error
	watchdog *time.Timer // runs checkIdle, with an idle timeout only
}

// abort records err as the end of the forwarding (unless one was already
// recorded, or err is nil) and closes both connections.
func (f *forwarding) abort(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped, f.err = true, err
	f.downstream.Close()
	f.upstream.Close()
}

func (f *forwarding) firstError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// checkIdle is the idle watchdog: it closes both connections with
// ErrIdleTimeout when no byte has moved either way for the idle timeout
// (a write that blocks moves none), else looks again when that could next
// be true. One timer per connection, and none changed per read or write:
// a deadline set around every read and write cost the relay two timer
// changes per system call.
func (f *forwarding) checkIdle() {
	f.mu.Lock()
	stopped, w := f.stopped, f.watchdog
	f.mu.Unlock()
	if stopped {
		return
	}
	if left := time.Until(f.idleDeadline()); left > 0 {
		w.Reset(left)
		return
	}
	f.abort(fmt.Errorf("%w: no byte either way for %v", ErrIdleTimeout, f.idleTimeout))
}

func (f *forwarding) touch() {
	if f.idleTimeout > 0 {
		f.lastActivity.Store(time.Now().UnixNano())
	}
}

// idleDeadline is when the connection becomes idle if no byte moves.
func (f *forwarding) idleDeadline() time.Time {
	return time.Unix(0, f.lastActivity.Load()).Add(f.idleTimeout)
}
