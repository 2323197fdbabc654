package origdst

import (
	"net"
	"net/netip"
	"testing"
)

func TestLocalDstUnmapsIPv4(t *testing.T) {
	ln, err := net.Listen("tcp", "[::]:0") // dual-stack: IPv4 peers appear as ::ffff:a.b.c.d
	if err != nil {
		t.Skipf("no dual-stack listener: %v", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	client, err := net.Dial("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got, want := LocalDst(conn), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)); got != want {
		t.Errorf("LocalDst = %v, want %v", got, want)
	}
}

func TestDialerBindsTransparentSource(t *testing.T) {
	src := netip.MustParseAddr("198.19.0.77")
	d := DialOptions{TransparentSource: src}.Dialer()
	if got := d.LocalAddr.(*net.TCPAddr); !got.IP.Equal(src.AsSlice()) || got.Port != 0 {
		t.Errorf("LocalAddr = %v, want %v with any port", got, src)
	}
	if d := (DialOptions{}).Dialer(); d.LocalAddr != nil {
		t.Errorf("LocalAddr = %v without a transparent source, want nil", d.LocalAddr)
	}
}
