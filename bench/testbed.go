package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
)

// testbed is the network a benchmark runs on: a load host running fortio's
// client and a server host running fortio's server, which clients reach
// through a virtual service IP as they would a Kubernetes Service.
type testbed struct {
	net          *netns.Network
	load, server *netns.Host
	vip          netip.Addr
	dir          string // logs and the proxies' discovery file
	bin          binaries
	log          *slog.Logger
	fortioServer *process
	proxyEnv     []string // Config.ProxyEnv
	// peers maps each installed peer program to its path.
	peers map[string]string
	// ctl and controller serve the skein-mtls scenario; controller is nil
	// until its first run (see startControlPlane).
	ctl        *netns.Host
	controller *process
}

// newTestbed creates the network, the hosts and the fortio server. Close it
// when done, also when newTestbed fails.
func newTestbed(ctx context.Context, n *netns.Network, dir string, bin binaries, log *slog.Logger) (*testbed, error) {
	tb := &testbed{net: n, dir: dir, bin: bin, log: log, vip: n.AllocateVIP()}
	var err error
	if tb.load, err = n.AddHost(ctx, "load"); err != nil {
		return tb, err
	}
	if tb.server, err = n.AddHost(ctx, "server"); err != nil {
		return tb, err
	}
	// The skein-mtls scenario's controller runs here (see mtls.go).
	if tb.ctl, err = n.AddHost(ctx, "ctl"); err != nil {
		return tb, err
	}
	for _, p := range Protocols {
		vip := netip.AddrPortFrom(tb.vip, p.Port)
		if err := n.SetService(ctx, vip, []netip.AddrPort{tb.endpoint(p)}); err != nil {
			return tb, err
		}
	}
	if err := tb.writeDiscovery(); err != nil {
		return tb, err
	}
	return tb, tb.startFortioServer(ctx)
}

// close stops the fortio server and the controller; the caller closes the
// network.
func (tb *testbed) close() {
	if tb.controller != nil {
		tb.controller.stop()
	}
	if tb.fortioServer != nil {
		tb.fortioServer.stop()
	}
}

// target is the address clients dial for protocol p: the service's VIP.
func (tb *testbed) target(p Protocol) netip.AddrPort { return netip.AddrPortFrom(tb.vip, p.Port) }

// endpoint is where the fortio server serves protocol p.
func (tb *testbed) endpoint(p Protocol) netip.AddrPort {
	return netip.AddrPortFrom(tb.server.IP, p.Port)
}

func (tb *testbed) discoveryFile() string { return filepath.Join(tb.dir, "discovery.yaml") }

// writeDiscovery writes the proxies' discovery file: one service per
// protocol, reachable at its VIP, with the fortio server as its endpoint.
func (tb *testbed) writeDiscovery() error {
	var b bytes.Buffer
	b.WriteString("services:\n")
	for _, p := range Protocols {
		fmt.Fprintf(&b, "- name: fortio-%s.bench.svc.cluster.local:%d\n", p.Name, p.Port)
		fmt.Fprintf(&b, "  addresses: [%q]\n", tb.target(p))
		fmt.Fprintf(&b, "  endpoints:\n  - address: %s\n", tb.endpoint(p))
		fmt.Fprintf(&b, "    labels: {namespace: bench, service: fortio, workload: fortio, pod: %s}\n", tb.server.Name)
	}
	if err := os.WriteFile(tb.discoveryFile(), b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing discovery file: %w", err)
	}
	return nil
}

// startFortioServer runs `fortio server` in the server host and waits until
// every protocol's port accepts connections from the load host.
func (tb *testbed) startFortioServer(ctx context.Context) error {
	args := []string{"server", "-quiet", "-redirect-port", "disabled", "-tcp-port", "disabled", "-udp-port", "disabled"}
	for _, p := range Protocols {
		args = append(args, p.serverFlag, strconv.Itoa(int(p.Port)))
	}
	var err error
	tb.fortioServer, err = startProcess("fortio-server", tb.server.Command(context.Background(), tb.bin.fortio, args...), tb.dir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for _, p := range Protocols {
		if err := waitAccepting(ctx, tb.load, tb.target(p), tb.fortioServer); err != nil {
			return fmt.Errorf("fortio server: %w\n%s", err, tb.fortioServer.tail(20))
		}
	}
	return nil
}

// waitAccepting dials addr from host h until a connection succeeds.
func waitAccepting(ctx context.Context, h *netns.Host, addr netip.AddrPort, p *process) error {
	dial := dialerIn(h)
	for {
		c, err := dial(ctx, "tcp", addr.String())
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("exited before accepting on %s", addr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not accepting on %s: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitReady polls url from inside h (nil: from here) until it answers 200.
func waitReady(ctx context.Context, h *netns.Host, url string, p *process) error {
	client := &http.Client{Transport: &http.Transport{DialContext: dialerIn(h)}, Timeout: time.Second}
	defer client.CloseIdleConnections()
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if p.exited() {
			return errors.New("exited before it was ready")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", url, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// dialerIn returns a dial function whose sockets live in h's namespace, so
// their traffic meets h's netfilter rules like the application's own; nil
// means this process's own namespace.
func dialerIn(h *netns.Host) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if h == nil {
		var d net.Dialer
		return d.DialContext
	}
	return h.DialContext
}

// runLoad runs fortio's client in the load host against target for d: at
// a fixed rate over one connection, or at saturation (rate 0) over conns.
func (tb *testbed) runLoad(ctx context.Context, p Protocol, target netip.AddrPort, rate, conns int, d time.Duration) (loadResult, error) {
	cmd := tb.load.Command(ctx, tb.bin.fortio, loadArgs(p, target, rate, conns, d.Seconds())...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return loadResult{}, ctx.Err()
		}
		return loadResult{}, fmt.Errorf("fortio load %s at %d rps: %w\n%s", p.Name, rate, err, lastLines(stderr.String(), 10))
	}
	r, err := parseFortio(stdout.Bytes(), p.ok)
	if err != nil {
		return r, fmt.Errorf("fortio load %s at %d rps: %w\n%s", p.Name, rate, err, lastLines(stderr.String(), 10))
	}
	return r, nil
}
