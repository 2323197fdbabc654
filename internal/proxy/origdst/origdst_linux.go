package origdst

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h
// (golang.org/x/sys/unix does not define it).
const ip6tSOOriginalDst = 80

// OriginalDst returns the destination a connection had before netfilter's
// REDIRECT (or DNAT) sent it to the proxy, as recorded by conntrack. It fails
// for a connection that was not redirected.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	local, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: local address %v is not TCP", c.LocalAddr())
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	// An IPv4 connection accepted on a dual-stack socket has an IPv4-mapped
	// local address; conntrack knows it as IPv4.
	ipv4 := local.AddrPort().Addr().Unmap().Is4()
	var dst netip.AddrPort
	var sockErr error
	err = raw.Control(func(fd uintptr) {
		if ipv4 {
			dst, sockErr = originalDst4(int(fd))
		} else {
			dst, sockErr = originalDst6(int(fd))
		}
	})
	if err == nil {
		err = sockErr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination of %v: %w", c.RemoteAddr(), err)
	}
	return dst, nil
}

func originalDst4(fd int) (netip.AddrPort, error) {
	// The option returns a struct sockaddr_in (16 bytes); IPv6Mreq is the
	// 20-byte getsockopt helper large enough to hold it.
	mreq, err := unix.GetsockoptIPv6Mreq(fd, unix.SOL_IP, unix.SO_ORIGINAL_DST)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", err)
	}
	sa := mreq.Multiaddr // family (2 bytes), port (2, big-endian), address (4)
	port := binary.BigEndian.Uint16(sa[2:4])
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), port), nil
}

func originalDst6(fd int) (netip.AddrPort, error) {
	// The option returns a struct sockaddr_in6; IPv6MTUInfo starts with one.
	info, err := unix.GetsockoptIPv6MTUInfo(fd, unix.SOL_IPV6, ip6tSOOriginalDst)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockopt IP6T_SO_ORIGINAL_DST: %w", err)
	}
	// Port holds the network-order bytes as they were in memory.
	port := binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, info.Addr.Port))
	return netip.AddrPortFrom(netip.AddrFrom16(info.Addr.Addr).Unmap(), port), nil
}

// ListenTransparent listens on addr (host:port, TCP) with IP_TRANSPARENT (or
// IPV6_TRANSPARENT) set, as TPROXY needs: the listener then accepts
// connections addressed to any IP, and LocalDst gives each one's original
// destination. Needs CAP_NET_ADMIN.
func ListenTransparent(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		return setTransparent(network, c)
	}}
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transparent listener: %w", err)
	}
	return ln, nil
}

// control is the net.Dialer Control hook that applies o to a new socket.
func (o DialOptions) control(network, _ string, c syscall.RawConn) error {
	if o.Mark != 0 {
		if err := setsockopt(c, unix.SOL_SOCKET, unix.SO_MARK, int(o.Mark), "SO_MARK"); err != nil {
			return err
		}
	}
	if o.TransparentSource.IsValid() {
		return setTransparent(network, c)
	}
	return nil
}

func setTransparent(network string, c syscall.RawConn) error {
	if strings.HasSuffix(network, "6") {
		return setsockopt(c, unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT")
	}
	return setsockopt(c, unix.SOL_IP, unix.IP_TRANSPARENT, 1, "IP_TRANSPARENT")
}

func setsockopt(c syscall.RawConn, level, opt, value int, name string) error {
	var sockErr error
	err := c.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), level, opt, value)
	})
	if err = errors.Join(err, sockErr); err != nil {
		return fmt.Errorf("setsockopt %s: %w", name, err)
	}
	return nil
}
