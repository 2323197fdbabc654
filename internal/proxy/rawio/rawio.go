package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Conn is a TCP connection whose Read and Write are raw system calls. The
// rest of net.TCPConn (deadlines, CloseWrite, SetLinger, SyscallConn) is
// the connection's own.
type Conn struct {
	*net.TCPConn
	r op // reads: one at a time, as poll.FD's read lock
	w op // writes: one at a time
}

// op is one direction's system calls: the RawConn call it runs (Read or
// Write) with its callback, both bound once per Conn so that a call
// allocates nothing, and the state of the call in progress.
type op struct {
	name string // "read" or "write", for errors
	call func(func(fd uintptr) bool) error
	fn   func(fd uintptr) bool

	mu    sync.Mutex // held for the call in progress
	buf   []byte
	n     int
	errno syscall.Errno
}

// maxRW is the most one read or write asks for, as in internal/poll: some
// kernels refuse larger counts.
const maxRW = 1 << 30

// Wrap returns c with raw reads and writes when it is a *net.TCPConn (and
// the platform has them), else c itself.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !supported {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rw := &Conn{TCPConn: tc, r: op{name: "read", call: rc.Read}, w: op{name: "write", call: rc.Write}}
	rw.r.fn = rw.r.read
	rw.w.fn = rw.w.write
	return rw
}

// Read reads as net.Conn's Read does: io.EOF at the end of the stream, a
// *net.OpError otherwise.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if len(b) > maxRW {
		b = b[:maxRW]
	}
	n, err := c.r.run(c, b)
	if err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

// Write writes all of b, waiting for the socket to drain as needed, as
// net.Conn's Write does.
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	return c.w.run(c, b)
}

// run makes o's RawConn call over b and says what it did as net.Conn
// does: a *net.OpError for a failed system call, a deadline or a closed
// connection.
func (o *op) run(c *Conn, b []byte) (int, error) {
	o.mu.Lock()
	o.buf, o.n, o.errno = b, 0, 0
	err := o.call(o.fn)
	n, errno := o.n, o.errno
	o.buf = nil
	o.mu.Unlock()
	switch {
	case err != nil:
		return n, relabel(err, o.name)
	case errno != 0:
		return n, c.opError(o.name, errno)
	}
	return n, nil
}

// opError is the error net.Conn returns for a failed system call.
func (c *Conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

// relabel names a RawConn's error (a deadline, a closed connection) after
// the call that met it, instead of "raw-read" or "raw-write".
func relabel(err error, op string) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		oe.Op = op
	}
	return err
}
