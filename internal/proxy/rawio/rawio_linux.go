package rawio

import (
	"syscall"
	"unsafe"
)

const supported = true

// read is the RawConn's read callback: false to wait for readability.
func (o *op) read(fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&o.buf[0])), uintptr(len(o.buf)))
		switch errno {
		case 0:
			o.n = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			o.errno = errno
			return true
		}
	}
}

// write is the RawConn's write callback: it writes until the buffer is
// gone, or returns false to wait for writability.
func (o *op) write(fd uintptr) bool {
	for len(o.buf) > 0 {
		chunk := o.buf[:min(len(o.buf), maxRW)]
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&chunk[0])), uintptr(len(chunk)))
		switch errno {
		case 0:
			o.n += int(n)
			o.buf = o.buf[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			o.errno = errno
			return true
		}
	}
	return true
}
