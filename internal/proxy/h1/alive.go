package h1

import (
	"net"
	"syscall"
	"time"
)

// staleCheckAfter is how long a pooled connection may sit idle before it
// is checked for a close by the upstream before being reused: upstreams
// close idle keep-alive connections after seconds (Node.js 5 s, Apache
// 5 s, nginx 75 s), never sooner, so a busy pool pays nothing.
var staleCheckAfter = time.Second

// closedByPeer reports whether the upstream has closed c (or sent bytes
// nobody asked for) while it sat idle, peeking at the socket without
// blocking. A connection that cannot be peeked at is taken as open.
func closedByPeer(c net.Conn) bool {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	_ = rc.Read(func(fd uintptr) bool {
		closed = peekClosed(fd)
		return true
	})
	return closed
}
