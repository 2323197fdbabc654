package origdst

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestOriginalDstAfterRedirect(t *testing.T) {
	tests := []struct {
		name     string
		listen   string // network and address of the proxy's listener
		network  string
		original string // where the client connects
		setup    [][]string
	}{
		{
			name: "IPv4", network: "tcp4", listen: "0.0.0.0:4140", original: "198.19.0.5:80",
			setup: [][]string{
				{"ip", "route", "add", "198.19.0.0/16", "dev", "lo"},
				{"iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "198.19.0.5", "-j", "REDIRECT", "--to-ports", "4140"},
			},
		},
		{
			name: "IPv4 on a dual-stack listener", network: "tcp", listen: "[::]:4140", original: "198.19.0.5:80",
			setup: [][]string{
				{"ip", "route", "add", "198.19.0.0/16", "dev", "lo"},
				{"iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "198.19.0.5", "-j", "REDIRECT", "--to-ports", "4140"},
			},
		},
		{
			name: "IPv6", network: "tcp6", listen: "[::]:4140", original: "[fd00:5::5]:8080",
			setup: [][]string{
				{"ip", "-6", "route", "add", "fd00:5::/64", "dev", "lo"},
				{"ip6tables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "fd00:5::5", "-j", "REDIRECT", "--to-ports", "4140"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := newNetns(t)
			for _, cmd := range tt.setup {
				runIn(t, ns, cmd...)
			}
			var ln net.Listener
			var client net.Conn
			inNetns(t, ns, func() {
				var err error
				if ln, err = net.Listen(tt.network, tt.listen); err != nil {
					t.Errorf("listen: %v", err)
					return
				}
				if client, err = net.Dial("tcp", tt.original); err != nil {
					t.Errorf("dial %s: %v", tt.original, err)
				}
			})
			if t.Failed() {
				return
			}
			t.Cleanup(func() { ln.Close(); client.Close() })
			conn := acceptTCP(t, ln)

			got, err := OriginalDst(conn)
			if err != nil {
				t.Fatal(err)
			}
			if want := netip.MustParseAddrPort(tt.original); got != want {
				t.Errorf("OriginalDst = %v, want %v", got, want)
			}
		})
	}
}

func TestOriginalDstFailsWithoutRedirect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn := acceptTCP(t, ln)
	// Without conntrack's NAT record the kernel has nothing to report. (If
	// the host itself NATs loopback, the answer is the address dialed.)
	if got, err := OriginalDst(conn); err == nil && got != LocalDst(conn) {
		t.Errorf("OriginalDst of a direct connection = %v, want an error or %v", got, LocalDst(conn))
	}
}

// TestTransparentProxying runs a TPROXY setup across two namespaces joined by
// a veth pair: "client" (10.99.0.1) routes 198.19.0.0/16 to "proxy"
// (10.99.0.2), whose mangle table hands those connections to a transparent
// listener. The proxy then dials back to the client's server from a borrowed
// source address, as an inbound sidecar does to show its app the real peer.
func TestTransparentProxying(t *testing.T) {
	clientNS, proxyNS := newNetns(t), newNetns(t)
	veth := "veth-sk" + proxyNS[len(proxyNS)-6:]
	run(t, "ip", "-n", clientNS, "link", "add", veth, "type", "veth", "peer", "name", "peer0", "netns", proxyNS)
	runIn(t, clientNS, "ip", "addr", "add", "10.99.0.1/24", "dev", veth)
	runIn(t, clientNS, "ip", "link", "set", veth, "up")
	runIn(t, clientNS, "ip", "route", "add", "198.19.0.0/16", "via", "10.99.0.2")
	for _, cmd := range [][]string{
		{"ip", "addr", "add", "10.99.0.2/24", "dev", "peer0"},
		{"ip", "link", "set", "peer0", "up"},
		{"sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.peer0.rp_filter=0"},
		// Packets marked 0x2 are delivered locally, whatever their
		// destination. The bit must not be set in ProxyMark (0x539 has 0x1),
		// or the proxy's own marked upstream packets would come back to it.
		{"ip", "rule", "add", "fwmark", "0x2/0x2", "lookup", "100"},
		{"ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"},
		// Packets of existing sockets (the replies to a borrowed source
		// included) go to their socket, not to TPROXY again.
		{"iptables", "-t", "mangle", "-N", "DIVERT"},
		{"iptables", "-t", "mangle", "-A", "DIVERT", "-j", "MARK", "--set-mark", "0x2/0x2"},
		{"iptables", "-t", "mangle", "-A", "DIVERT", "-j", "ACCEPT"},
		{"iptables", "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-m", "socket", "-j", "DIVERT"},
		// New connections to the service range go to the transparent listener.
		{"iptables", "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-d", "198.19.0.0/16", "-j", "TPROXY", "--on-port", "4143", "--tproxy-mark", "0x2/0x2"},
	} {
		runIn(t, proxyNS, cmd...)
	}

	var transparentLn, appLn net.Listener
	var client net.Conn
	inNetns(t, proxyNS, func() {
		var err error
		if transparentLn, err = ListenTransparent(context.Background(), "0.0.0.0:4143"); err != nil {
			t.Error(err)
		}
	})
	inNetns(t, clientNS, func() {
		var err error
		if appLn, err = net.Listen("tcp", "10.99.0.1:8080"); err != nil {
			t.Error(err)
			return
		}
		if client, err = net.Dial("tcp", "198.19.0.5:80"); err != nil {
			t.Errorf("dial through TPROXY: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	t.Cleanup(func() { transparentLn.Close(); appLn.Close(); client.Close() })

	// Inbound: the accepted connection's local address is where the client was going.
	accepted := acceptTCP(t, transparentLn)
	defer accepted.Close()
	if got, want := LocalDst(accepted), netip.MustParseAddrPort("198.19.0.5:80"); got != want {
		t.Errorf("LocalDst = %v, want %v", got, want)
	}

	// Upstream: dial from an address that is not local to the proxy, marked.
	borrowed := netip.MustParseAddr("198.19.0.77")
	var upstream net.Conn
	inNetns(t, proxyNS, func() {
		plain := net.Dialer{LocalAddr: &net.TCPAddr{IP: borrowed.AsSlice()}}
		if c, err := plain.Dial("tcp", "10.99.0.1:8080"); err == nil {
			c.Close()
			t.Errorf("a plain dial from non-local %v succeeded; the test proves nothing", borrowed)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		opts := DialOptions{Mark: ProxyMark, TransparentSource: borrowed}
		if upstream, err = DialContext(ctx, "tcp", "10.99.0.1:8080", opts); err != nil {
			t.Errorf("dial with transparent source %v: %v", borrowed, err)
		}
	})
	if t.Failed() {
		return
	}
	defer upstream.Close()
	app := acceptTCP(t, appLn)
	defer app.Close()
	if got := app.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != borrowed {
		t.Errorf("app sees peer %v, want the borrowed source %v", got, borrowed)
	}
	if mark := socketMark(t, upstream.(*net.TCPConn)); mark != ProxyMark {
		t.Errorf("SO_MARK = %#x, want %#x", mark, ProxyMark)
	}

	// Bytes flow both ways on the borrowed-source connection.
	upstream.Write([]byte("hi"))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(app, buf); err != nil || string(buf) != "hi" {
		t.Errorf("app read %q, %v", buf, err)
	}
}

func acceptTCP(t *testing.T, ln net.Listener) *net.TCPConn {
	t.Helper()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func socketMark(t *testing.T, c *net.TCPConn) uint32 {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mark int
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		mark, sockErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK)
	}); err != nil || sockErr != nil {
		t.Fatalf("getsockopt SO_MARK: %v %v", err, sockErr)
	}
	return uint32(mark)
}
