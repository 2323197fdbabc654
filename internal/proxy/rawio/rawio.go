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
	rc syscall.RawConn

	rmu sync.Mutex // one Read at a time, as poll.FD's read lock
	r   op
	wmu sync.Mutex // one Write at a time
	w   op
}

// op is one Read or Write in progress: the buffer left to it, what it did,
// and the callback given to the RawConn, made once per Conn so that a call
// allocates nothing.
type op struct {
	buf   []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
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
	rw := &Conn{TCPConn: tc, rc: rc}
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
	c.rmu.Lock()
	c.r.buf, c.r.n, c.r.errno = b, 0, 0
	err := c.rc.Read(c.r.fn)
	n, errno := c.r.n, c.r.errno
	c.r.buf = nil
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, relabel(err, "read")
	case errno != 0:
		return 0, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, waiting for the socket to drain as needed, as
// net.Conn's Write does.
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	c.w.buf, c.w.n, c.w.errno = b, 0, 0
	err := c.rc.Write(c.w.fn)
	n, errno := c.w.n, c.w.errno
	c.w.buf = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, relabel(err, "write")
	case errno != 0:
		return n, c.opError("write", errno)
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
