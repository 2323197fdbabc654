//go:build !linux

package origdst

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"syscall"
)

var errNotLinux = fmt.Errorf("transparent proxying on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// OriginalDst is only available on Linux.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) { return netip.AddrPort{}, errNotLinux }

// ListenTransparent is only available on Linux.
func ListenTransparent(ctx context.Context, addr string) (net.Listener, error) {
	return nil, errNotLinux
}

func (o DialOptions) control(network, _ string, c syscall.RawConn) error {
	if o.Mark != 0 || o.TransparentSource.IsValid() {
		return errNotLinux
	}
	return nil
}
