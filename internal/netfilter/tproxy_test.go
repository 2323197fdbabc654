package netfilter_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skeinmesh/skein/internal/netfilter"
	"github.com/skeinmesh/skein/internal/testenv"
)

func TestTProxyModeDeliversInboundToProxyWithClientAndDestinationIntact(t *testing.T) {
	n := testenv.NewNetwork(t)
	client := testenv.AddHost(t, n, "client")
	app := testenv.AddHost(t, n, "app")
	cfg := netfilter.DefaultConfig()
	cfg.Mode = netfilter.ModeTProxy
	if err := netfilter.Apply(t.Context(), app.Namespace, cfg, nil); err != nil {
		t.Fatal(err)
	}

	// The proxy's inbound listener must be transparent to receive TPROXY'd
	// connections.
	var proxyLn net.Listener
	if err := app.Enter(func() (err error) {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var sockErr error
			err := c.Control(func(fd uintptr) {
				sockErr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
			})
			if err != nil {
				return err
			}
			return sockErr
		}}
		proxyLn, err = lc.Listen(context.Background(), "tcp4", fmt.Sprintf("0.0.0.0:%d", cfg.InboundPort))
		return err
	}); err != nil {
		t.Fatalf("transparent listener: %v", err)
	}
	t.Cleanup(func() { proxyLn.Close() })

	appAddr := netip.AddrPortFrom(app.IP, 8080)
	var conn net.Conn
	if err := client.Enter(func() (err error) {
		conn, err = net.DialTimeout("tcp", appAddr.String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("client dialing %s: %v", appAddr, err)
	}
	defer conn.Close()

	accepted := acceptOne(t, proxyLn)
	if got := netip.MustParseAddrPort(accepted.LocalAddr().String()); got != appAddr {
		t.Errorf("proxy's local address %s, want the original destination %s", got, appAddr)
	}
	if got := netip.MustParseAddrPort(accepted.RemoteAddr().String()).Addr(); got != client.IP {
		t.Errorf("proxy sees client %s, want %s", got, client.IP)
	}
	// Data flows both ways over the diverted connection.
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	accepted.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := accepted.Read(buf); err != nil || string(buf) != "ping" {
		t.Fatalf("proxy read %q, %v; want ping", buf, err)
	}
	if _, err := accepted.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v; want pong", buf, err)
	}
}
