package h1

import "syscall"

// peekClosed peeks one byte of fd without blocking: EOF, an error or an
// unasked-for byte (a TLS alert, a stray answer) mean the connection is
// done; nothing to read means it is open.
func peekClosed(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN
}
