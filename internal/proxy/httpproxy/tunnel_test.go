package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// tunnelBackend answers each connection's first request with 200 (CONNECT)
// or 101 (an upgrade), then echoes bytes until the proxy closes its side;
// every closed connection is reported on the returned channel.
func tunnelBackend(t *testing.T) (addr string, closed <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { c.Close(); ch <- struct{}{} }()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				if req.Method == http.MethodConnect {
					fmt.Fprint(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				} else {
					fmt.Fprint(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
				}
				io.Copy(c, br)
			}()
		}
	}()
	return ln.Addr().String(), ch
}

// startTunnelProxy serves the handler chain with the given tunnel idle
// timeout and returns its address and server.
func startTunnelProxy(t *testing.T, backend string, idle time.Duration) (string, *Server) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := NewServer(NewHandler(Config{
		Direction: "outbound", Upstream: newFixedUpstream(backend), Log: log, TunnelIdleTimeout: idle,
	}), log)
	return serveOnLoopback(t, srv, ConnInfo{Direction: "outbound"}), srv
}

// openTunnel sends a CONNECT or an upgrade request and reads the answer's
// head; what follows is the tunnel.
func openTunnel(t *testing.T, proxy, kind string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	want := "HTTP/1.1 200"
	if kind == "connect" {
		fmt.Fprint(c, "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n")
	} else {
		fmt.Fprint(c, "GET /ws HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		want = "HTTP/1.1 101"
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, want) {
		t.Fatalf("%s answered %q, %v; want %s", kind, status, err, want)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			return c, br
		}
	}
}

// echo sends one byte through the tunnel and reads it back.
func echo(c net.Conn, br *bufio.Reader) error {
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	b, err := br.ReadByte()
	if err == nil && b != 'x' {
		err = fmt.Errorf("echoed %q", b)
	}
	return err
}

func TestIdleTunnelsAreClosedOnBothSides(t *testing.T) {
	for _, kind := range []string{"connect", "upgrade"} {
		t.Run(kind, func(t *testing.T) {
			backend, closed := tunnelBackend(t)
			const idle = 200 * time.Millisecond
			proxy, _ := startTunnelProxy(t, backend, idle)
			c, br := openTunnel(t, proxy, kind)
			// Traffic for three idle timeouts keeps the tunnel open.
			for end := time.Now().Add(3 * idle); time.Now().Before(end); time.Sleep(idle / 4) {
				if err := echo(c, br); err != nil {
					t.Fatalf("busy tunnel broke: %v", err)
				}
			}
			// Silence closes it: the client reads EOF, the backend's side ends.
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				t.Errorf("idle tunnel: client read %v, want EOF", err)
			}
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Error("idle tunnel: the backend's connection is still open")
			}
		})
	}
}

func TestShutdownWaitsForTunnelsThenClosesThem(t *testing.T) {
	for _, kind := range []string{"connect", "upgrade"} {
		t.Run(kind, func(t *testing.T) {
			backend, closed := tunnelBackend(t)
			proxy, srv := startTunnelProxy(t, backend, time.Hour)
			c, br := openTunnel(t, proxy, kind)

			ctx, cancel := context.WithCancel(context.Background())
			shutdown := make(chan error, 1)
			go func() { shutdown <- srv.Shutdown(ctx) }()
			// Within the grace the tunnel keeps working, and Shutdown waits.
			for range 5 {
				if err := echo(c, br); err != nil {
					t.Fatalf("tunnel broke during the grace: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			select {
			case err := <-shutdown:
				t.Fatalf("Shutdown returned %v while a tunnel was open", err)
			default:
			}
			// The grace ends: the tunnel is closed on both sides.
			cancel()
			if err := <-shutdown; !errors.Is(err, context.Canceled) {
				t.Errorf("Shutdown returned %v, want context.Canceled", err)
			}
			if _, err := br.ReadByte(); err == nil {
				t.Error("tunnel still open after the grace")
			}
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Error("the backend's connection is still open after the grace")
			}
		})
	}
}

func TestShutdownReturnsOnceTunnelsEnd(t *testing.T) {
	backend, _ := tunnelBackend(t)
	proxy, srv := startTunnelProxy(t, backend, time.Hour)
	c, br := openTunnel(t, proxy, "connect")
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(context.Background()) }()
	if err := echo(c, br); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case err := <-shutdown:
		if err != nil {
			t.Errorf("Shutdown returned %v, want nil once the last tunnel ended", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Shutdown still waiting after the last tunnel ended")
	}
}
