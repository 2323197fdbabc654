//go:build !linux

package rawio

const supported = false

func (o *op) read(fd uintptr) bool  { panic("rawio: unsupported") }
func (o *op) write(fd uintptr) bool { panic("rawio: unsupported") }
