// Package origdst finds where a connection redirected to the proxy was
// originally going (SO_ORIGINAL_DST in REDIRECT mode, the local address in
// TPROXY mode) and makes the special sockets the proxy needs: transparent
// listeners and upstream sockets with a firewall mark or a borrowed
// (non-local) source address. It does not program netfilter; skein-init does.
package origdst

import (
	"context"
	"net"
	"net/netip"
)

// ProxyMark is the firewall mark (SO_MARK) of the proxy's own upstream
// sockets; the netfilter rules skein-init writes let marked packets pass
// without being redirected to the proxy again. A TPROXY setup's own mark bit
// must not be set in it (0x539 has bit 0x1 set), or the proxy's marked
// upstream packets would be routed back to the host.
const ProxyMark uint32 = 0x539

// LocalDst is the original destination of a connection accepted by a
// transparent (TPROXY) listener: simply its local address. IPv4-mapped IPv6
// addresses are unmapped. It is the zero AddrPort if c has no IP address.
func LocalDst(c net.Conn) netip.AddrPort {
	if tcp, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ap := tcp.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// DialOptions configure the proxy's upstream sockets.
type DialOptions struct {
	// Mark sets SO_MARK on the socket (needs CAP_NET_ADMIN); 0 leaves it unset.
	Mark uint32
	// TransparentSource, if valid, binds the socket to this source address
	// (any port) with IP_TRANSPARENT, so the application sees the real
	// client's IP even though the address is not local (needs CAP_NET_ADMIN
	// and routing that brings the replies back to this host).
	TransparentSource netip.Addr
}

// Dialer returns a net.Dialer that applies o to every socket it makes.
func (o DialOptions) Dialer() *net.Dialer {
	d := &net.Dialer{Control: o.control}
	if o.TransparentSource.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: o.TransparentSource.AsSlice()}
	}
	return d
}

// DialContext dials address on network (a "tcp" network) with o applied.
func DialContext(ctx context.Context, network, address string, o DialOptions) (net.Conn, error) {
	return o.Dialer().DialContext(ctx, network, address)
}
