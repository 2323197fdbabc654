package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
)

// openFDs counts a process's open file descriptors.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// established counts the established TCP sockets in h with port as their
// local or remote port.
func established(t *testing.T, h *netns.Host, port int) int {
	t.Helper()
	out, err := h.Command(context.Background(), "ss", "-Htn", "state", "established",
		fmt.Sprintf("( sport = :%d or dport = :%d )", port, port)).Output()
	if err != nil {
		t.Fatalf("ss in %s: %v", h.Name, err)
	}
	return strings.Count(string(out), "\n")
}

func TestOpaqueConnectionIdlePastTheTimeoutIsClosedOnBothSides(t *testing.T) {
	p := newPair(t, "-banner", ":3306", "-id", "srv")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := p.inject(ctx, p.client, "redirect", "-discovery-file", p.discovery, "-opaque-ports", "3306"); err != nil {
		t.Fatal(err)
	}
	// Only the server's proxy has a short idle timeout: it must close both
	// the client's connection and its own to the application.
	const idle = 2 * time.Second
	serverProxy, err := p.inject(ctx, p.server, "redirect", "-discovery-file", p.discovery,
		"-opaque-ports", "3306", "-opaque-idle-timeout", idle.String())
	if err != nil {
		t.Fatal(err)
	}
	pid := serverProxy.cmd.Process.Pid
	fdsBefore := openFDs(t, pid)

	c, err := dialer(p.client)(ctx, "tcp", addrPort(p.server.IP, 3306).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 srv") {
		t.Fatalf("greeting %q, %v", line, err)
	}
	// The application's socket and the proxy's socket to it.
	if n := established(t, p.server, 3306); n != 2 {
		t.Errorf("%d established sockets on port 3306 in the server, want 2", n)
	}
	// Traffic for twice the timeout keeps the connection open.
	for i, end := 0, time.Now().Add(2*idle); time.Now().Before(end); i++ {
		fmt.Fprintf(c, "HELO %d\r\n", i)
		if line, err := r.ReadString('\n'); err != nil || line != fmt.Sprintf("250 HELO %d\r\n", i) {
			t.Fatalf("busy connection broke after %d exchanges: %q, %v", i, line, err)
		}
		time.Sleep(idle / 4)
	}
	// Silence closes it, on both sides.
	silent := time.Now()
	c.SetReadDeadline(time.Now().Add(idle + 10*time.Second))
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: client read %v, want EOF from the proxy", err)
	}
	t.Logf("closed %v after the last byte (timeout %v)", time.Since(silent).Round(10*time.Millisecond), idle)
	if !waitFor(5*time.Second, func() bool { return established(t, p.server, 3306) == 0 }) {
		t.Errorf("%d sockets on port 3306 still established in the server after the idle timeout", established(t, p.server, 3306))
	}
	if !waitFor(5*time.Second, func() bool { return openFDs(t, pid) <= fdsBefore }) {
		t.Errorf("server proxy holds %d fds after the idle timeout, want %d as before the connection", openFDs(t, pid), fdsBefore)
	}
}

// stillOpen reports whether nothing came back on c for a short while: the
// proxy holds the connection (in protocol detection) rather than refusing it.
func stillOpen(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return fmt.Errorf("held connection ended: %v", err)
}

// refused connects from h and reports whether the proxy closed the
// connection at once, without a byte. The reset can come so fast that
// connect itself reports it.
func refused(ctx context.Context, h *netns.Host, target string) error {
	c, err := dialer(h)(ctx, "tcp", target)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case n > 0:
		return errors.New("connection past the cap got data")
	case errors.As(err, &ne) && ne.Timeout():
		return errors.New("connection past the cap is held open")
	}
	return nil
}

func TestConnectionsPastTheCapsAreRefusedWhileOthersConnect(t *testing.T) {
	p := newPair(t, "-http", ":8081")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := p.inject(ctx, p.server, "redirect", "-discovery-file", p.discovery,
		"-max-connections", "8", "-max-connections-per-source", "5"); err != nil {
		t.Fatal(err)
	}
	other, err := p.net.AddHost(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	target := addrPort(p.server.IP, 8081).String()
	dial := func(h *netns.Host) net.Conn {
		t.Helper()
		c, err := dialer(h)(ctx, "tcp", target)
		if err != nil {
			t.Fatalf("connecting from %s: %v", h.Name, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	// Source A (the client host, unmeshed) opens 5 connections and sends
	// nothing: they sit in protocol detection, and count.
	var held []net.Conn
	for i := range 5 {
		c := dial(p.client)
		if err := stillOpen(c); err != nil {
			t.Fatalf("A's connection %d: %v", i+1, err)
		}
		held = append(held, c)
	}
	if err := refused(ctx, p.client, target); err != nil {
		t.Errorf("A's 6th connection (per-source cap 5): %v", err)
	}

	// Source B still gets answers: one keep-alive HTTP connection...
	client := httpClient(other)
	resp, err := client.Get("http://" + target + "/id")
	if err != nil {
		t.Fatalf("B's request while A is at its cap: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("B's request answered %d, want 200", resp.StatusCode)
	}
	// ...and two silent ones fill the listener's cap of 8.
	for i := range 2 {
		if err := stillOpen(dial(other)); err != nil {
			t.Fatalf("B's connection %d: %v", i+2, err)
		}
	}
	if err := refused(ctx, other, target); err != nil {
		t.Errorf("9th connection in all (listener cap 8): %v", err)
	}

	m := scrape(t, p.server)
	for reason, want := range map[string]float64{"max_connections_per_source": 1, "max_connections": 1} {
		if got := m.sum("tcp_refused_total", map[string]string{"direction": "inbound", "reason": reason}); got != want {
			t.Errorf("tcp_refused_total{direction=inbound,reason=%s} = %v, want %v", reason, got, want)
		}
	}

	// A closed connection frees its place.
	held[0].Close()
	if !waitFor(5*time.Second, func() bool {
		c, err := dialer(other)(ctx, "tcp", target)
		if err != nil {
			return false
		}
		defer c.Close()
		return stillOpen(c) == nil
	}) {
		t.Error("no place freed after one of A's connections closed")
	}
}

func TestMeshedOpaqueConnectionIdlePastTheTimeoutIsClosedOnBothSides(t *testing.T) {
	cp := newControlPlane(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The client's proxy again, with a short idle timeout: it ends the
	// mTLS connection to the server's proxy, which closes the application's.
	const idle = 2 * time.Second
	cp.proxies["client"].stop()
	args, err := cp.meshedProxyArgs(ctx, cp.client, clientID)
	if err != nil {
		t.Fatal(err)
	}
	clientProxy, err := cp.startProxy(ctx, "proxy-client-idle", cp.client, "redirect", append(args, "-opaque-idle-timeout", idle.String())...)
	if err != nil {
		t.Fatal(err)
	}
	serverSockets := func() (n int) {
		for _, h := range cp.servers {
			n += established(t, h, cpPortOpaque)
		}
		return n
	}
	greet := func() (net.Conn, *bufio.Reader) {
		c, err := dialer(cp.client)(ctx, "tcp", addrPort(cp.vip, cpPortOpaque).String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		r := bufio.NewReader(c)
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 echo-") {
			t.Fatalf("greeting %q, %v", line, err)
		}
		return c, r
	}
	// The first connection to the service makes the proxy watch it, over
	// the discovery connection to the controller it then keeps: count the
	// proxy's fds once that is open and the first connection is gone.
	warm, _ := greet()
	warm.Close()
	if !waitFor(5*time.Second, func() bool { return serverSockets() == 0 }) {
		t.Fatalf("%d sockets on port %d still established in the servers after the first connection closed", serverSockets(), cpPortOpaque)
	}
	fdsBefore := openFDs(t, clientProxy.cmd.Process.Pid)

	c, r := greet()
	defer c.Close()
	if n := serverSockets(); n != 2 {
		t.Errorf("%d established sockets on port %d in the servers, want 2 (the application's and its proxy's)", n, cpPortOpaque)
	}
	for i, end := 0, time.Now().Add(2*idle); time.Now().Before(end); i++ {
		fmt.Fprintf(c, "HELO %d\r\n", i)
		if line, err := r.ReadString('\n'); err != nil || line != fmt.Sprintf("250 HELO %d\r\n", i) {
			t.Fatalf("busy connection broke after %d exchanges: %q, %v", i, line, err)
		}
		time.Sleep(idle / 4)
	}
	c.SetReadDeadline(time.Now().Add(idle + 10*time.Second))
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: client read %v, want EOF from its proxy", err)
	}
	if !waitFor(5*time.Second, func() bool { return serverSockets() == 0 }) {
		t.Errorf("%d sockets on port %d still established in the servers after the idle timeout", serverSockets(), cpPortOpaque)
	}
	if !waitFor(5*time.Second, func() bool { return openFDs(t, clientProxy.cmd.Process.Pid) <= fdsBefore }) {
		t.Errorf("client proxy holds %d fds after the idle timeout, want %d as before the connection", openFDs(t, clientProxy.cmd.Process.Pid), fdsBefore)
	}
}
