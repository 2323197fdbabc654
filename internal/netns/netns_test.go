package netns_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
	"github.com/skeinmesh/skein/internal/testenv"
)

// dialFrom opens a TCP connection from inside host h.
func dialFrom(t *testing.T, h *netns.Host, addr netip.AddrPort) (net.Conn, error) {
	t.Helper()
	var conn net.Conn
	err := h.Enter(func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err = d.DialContext(t.Context(), "tcp", addr.String())
		return err
	})
	return conn, err
}

// serveName answers every line received on a connection with name and the
// client's address, until the listener is closed.
func serveName(ln net.Listener, name string) {
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewScanner(conn)
				for r.Scan() {
					fmt.Fprintf(conn, "%s %s\n", name, conn.RemoteAddr())
				}
			}()
		}
	}()
}

// ask sends one line on conn and returns the answer's fields (name, client address).
func ask(t *testing.T, conn net.Conn) (name, client string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(conn, "who"); err != nil {
		t.Fatalf("writing: %v", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("reading answer: %v", err)
	}
	fields := strings.Fields(line)
	if len(fields) != 2 {
		t.Fatalf("answer %q: want name and address", line)
	}
	return fields[0], fields[1]
}

// askNew asks over a new connection from h to addr.
func askNew(t *testing.T, h *netns.Host, addr netip.AddrPort) string {
	t.Helper()
	conn, err := dialFrom(t, h, addr)
	if err != nil {
		t.Fatalf("dialing %s from %s: %v", addr, h.Name, err)
	}
	defer conn.Close()
	name, _ := ask(t, conn)
	return name
}

func TestHostsTalkTCPWithTheirOwnAddresses(t *testing.T) {
	n := testenv.NewNetwork(t)
	a := testenv.AddHost(t, n, "a")
	b := testenv.AddHost(t, n, "b")
	if a.IP == b.IP || !netns.HostPrefix.Contains(a.IP) || !netns.HostPrefix.Contains(b.IP) {
		t.Fatalf("host addresses %s and %s: want distinct addresses in %s", a.IP, b.IP, netns.HostPrefix)
	}
	serveName(testenv.Listen(t, b, netip.AddrPortFrom(b.IP, 8080).String()), "b")

	conn, err := dialFrom(t, a, netip.AddrPortFrom(b.IP, 8080))
	if err != nil {
		t.Fatalf("dialing b from a: %v", err)
	}
	defer conn.Close()
	name, client := ask(t, conn)
	if name != "b" {
		t.Errorf("answered by %q, want b", name)
	}
	if got := netip.MustParseAddrPort(client).Addr(); got != a.IP {
		t.Errorf("b saw client %s, want a's own address %s (no NAT between hosts)", got, a.IP)
	}
}

// startBackends starts one named server per host on port 8080.
func startBackends(t *testing.T, n *netns.Network, names ...string) []netip.AddrPort {
	var addrs []netip.AddrPort
	for _, name := range names {
		h := testenv.AddHost(t, n, name)
		addr := netip.AddrPortFrom(h.IP, 8080)
		serveName(testenv.Listen(t, h, addr.String()), name)
		addrs = append(addrs, addr)
	}
	return addrs
}

func TestServiceSpreadsNewConnectionsAndKeepsEachOnOneBackend(t *testing.T) {
	n := testenv.NewNetwork(t)
	client := testenv.AddHost(t, n, "client")
	backends := startBackends(t, n, "b1", "b2", "b3")
	vip := netip.AddrPortFrom(n.AllocateVIP(), 80)
	if !netns.VIPPrefix.Contains(vip.Addr()) {
		t.Fatalf("VIP %s not in %s", vip.Addr(), netns.VIPPrefix)
	}
	if err := n.SetService(t.Context(), vip, backends); err != nil {
		t.Fatal(err)
	}

	// With 60 connections the chance that a backend gets none is 3*(2/3)^60, about 1e-10.
	hits := map[string]int{}
	for range 60 {
		hits[askNew(t, client, vip)]++
	}
	for _, name := range []string{"b1", "b2", "b3"} {
		if hits[name] == 0 {
			t.Errorf("backend %s got no connection; hits: %v", name, hits)
		}
	}

	conn, err := dialFrom(t, client, vip)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	first, seenClient := ask(t, conn)
	if got := netip.MustParseAddrPort(seenClient).Addr(); got != client.IP {
		t.Errorf("backend saw client %s, want %s (DNAT keeps the source)", got, client.IP)
	}
	for range 20 {
		if name, _ := ask(t, conn); name != first {
			t.Fatalf("one connection answered by %s and then %s", first, name)
		}
	}
}

func TestSetServiceReplacesBackends(t *testing.T) {
	n := testenv.NewNetwork(t)
	client := testenv.AddHost(t, n, "client")
	backends := startBackends(t, n, "old", "new")
	vip := netip.AddrPortFrom(n.AllocateVIP(), 80)

	steps := []struct {
		backends []netip.AddrPort
		want     string // "" means refused
	}{
		{backends[:1], "old"},
		{backends[1:], "new"},
		{nil, ""},
		{backends[:1], "old"},
	}
	for i, step := range steps {
		if err := n.SetService(t.Context(), vip, step.backends); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		for range 5 {
			if step.want == "" {
				assertRefused(t, client, vip)
				continue
			}
			if got := askNew(t, client, vip); got != step.want {
				t.Fatalf("step %d: answered by %s, want %s", i, got, step.want)
			}
		}
	}
	if err := n.DeleteService(t.Context(), vip); err != nil {
		t.Fatal(err)
	}
	assertRefused(t, client, vip)
}

func assertRefused(t *testing.T, h *netns.Host, addr netip.AddrPort) {
	t.Helper()
	conn, err := dialFrom(t, h, addr)
	if err == nil {
		conn.Close()
		t.Fatalf("dialing %s: connected, want refused", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dialing %s: %v, want connection refused", addr, err)
	}
}

func namespaces(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}

func TestCloseKillsProcessesAndRemovesNamespaces(t *testing.T) {
	testenv.RequireRoot(t)
	n, err := netns.New(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	h := testenv.AddHost(t, n, "worker")
	// The timeout only keeps a broken Close from hanging the test; Close
	// must kill the process long before.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sleeper := h.Command(ctx, "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntilInside(t, h, sleeper.Process.Pid)

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	err = sleeper.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || ctx.Err() != nil {
		t.Errorf("process in the namespace ended with %v (context: %v), want killed by Close", err, ctx.Err())
	}
	if list := namespaces(t); strings.Contains(list, n.ID()) {
		t.Errorf("namespaces of network %s left after Close:\n%s", n.ID(), list)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// waitUntilInside waits until `ip netns exec` has moved pid into h's
// namespace: before that, Close cannot see it.
func waitUntilInside(t *testing.T, h *netns.Host, pid int) {
	t.Helper()
	for range 500 {
		out, err := exec.Command("ip", "netns", "pids", h.Namespace).Output()
		if err != nil {
			t.Fatalf("ip netns pids: %v", err)
		}
		if slices.Contains(strings.Fields(string(out)), strconv.Itoa(pid)) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d never entered namespace %s", pid, h.Namespace)
}

func TestCleanStaleRemovesOnlyNetworksOfDeadOwners(t *testing.T) {
	stale := testenv.NewNetwork(t)
	testenv.AddHost(t, stale, "orphan")
	live := testenv.NewNetwork(t)
	testenv.AddHost(t, live, "kept")

	// A reaped child's PID belongs to no process (until the PID is reused,
	// which the recorded start time also guards against).
	child := exec.Command("true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	if err := netns.SetOwnerPID(stale, child.Process.Pid); err != nil {
		t.Fatal(err)
	}

	if err := netns.CleanStale(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	list := namespaces(t)
	if strings.Contains(list, stale.ID()) {
		t.Errorf("namespaces of dead owner's network %s left:\n%s", stale.ID(), list)
	}
	if !strings.Contains(list, "skein-"+live.ID()+"-kept") || !strings.Contains(list, live.Hub()) {
		t.Errorf("namespaces of live network %s removed:\n%s", live.ID(), list)
	}
}

func TestWriteFileIsSeenAsEtcFileInsideHost(t *testing.T) {
	n := testenv.NewNetwork(t)
	h := testenv.AddHost(t, n, "dns")
	if err := h.WriteFile("hosts", []byte("198.19.0.9 web.demo\n")); err != nil {
		t.Fatal(err)
	}
	out, err := h.Command(t.Context(), "cat", "/etc/hosts").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "web.demo") {
		t.Errorf("/etc/hosts inside host = %q, want the written file", out)
	}
	if err := h.WriteFile("../passwd", nil); err == nil {
		t.Error("WriteFile accepted a path, want only plain names")
	}
}

// A process already running in the host sees a rewritten file (its mount
// is of the file's inode), and an unchanged file is not written at all.
func TestWriteFileRewritesInPlace(t *testing.T) {
	n := testenv.NewNetwork(t)
	h := testenv.AddHost(t, n, "dns")
	long := "198.19.0.9 web.demo web.demo.svc web.demo.svc.cluster.local\n"
	if err := h.WriteFile("hosts", []byte(long)); err != nil {
		t.Fatal(err)
	}
	cmd := h.Command(t.Context(), "sh", "-c", "read line; cat /etc/hosts")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// ip netns exec mounts the file, then becomes sh.
	waitForExec(t, cmd.Process.Pid, "sh")
	short := "198.19.0.10 api.demo\n"
	if err := h.WriteFile("hosts", []byte(short)); err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte("\n"))
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if out.String() != short {
		t.Errorf("a process started before the rewrite read %q, want %q", out.String(), short)
	}

	path := filepath.Join("/etc/netns", h.Namespace, "hosts")
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	old := before.ModTime().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteFile("hosts", []byte(short)); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(old) {
		t.Errorf("writing the same content again wrote the file (modified %v, was %v)", after.ModTime(), old)
	}
}

// waitForExec waits until process pid runs the program named comm.
func waitForExec(t *testing.T, pid int, comm string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d runs %q (%v), want %s", pid, b, err, comm)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCommandAsRunsWithOtherUID(t *testing.T) {
	n := testenv.NewNetwork(t)
	h := testenv.AddHost(t, n, "proxy")
	u := netns.User{UID: 2102, GID: 2102, AmbientCaps: []string{"net_admin"}}
	out, err := h.CommandAs(t.Context(), u, "sh", "-c", "id -u; id -g; grep CapAmb /proc/self/status").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	fields := strings.Fields(string(out))
	if len(fields) != 4 || fields[0] != "2102" || fields[1] != "2102" {
		t.Fatalf("output %q: want uid and gid 2102", out)
	}
	const capNetAdmin = 1 << 12
	var amb uint64
	fmt.Sscanf(fields[3], "%x", &amb)
	if amb&capNetAdmin == 0 {
		t.Errorf("ambient capabilities %s: want CAP_NET_ADMIN", fields[3])
	}
}

func TestRemoveHostDeletesItsNamespaceAndProcesses(t *testing.T) {
	n := testenv.NewNetwork(t)
	ctx := context.Background()
	h := testenv.AddHost(t, n, "gone")
	cmd := h.Command(ctx, "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitUntilInside(t, h, cmd.Process.Pid)
	if err := n.RemoveHost(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the host's process survived RemoveHost")
	}
	if strings.Contains(namespaces(t), h.Namespace) {
		t.Errorf("namespace %s still listed after RemoveHost", h.Namespace)
	}
	if err := n.RemoveHost(ctx, "gone"); err == nil {
		t.Error("removing a host twice did not fail")
	}
}

func TestOwnerOfAKilledUnreapedProcessIsNotAlive(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	o := netns.OwnerOf(cmd.Process.Pid)
	if !o.Alive() {
		t.Fatal("a running process is not alive")
	}
	cmd.Process.Kill()
	// Not reaped yet: a zombie keeps its /proc entry.
	deadline := time.Now().Add(5 * time.Second)
	for o.Alive() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if o.Alive() {
		t.Error("a killed process that is not reaped yet still counts as alive")
	}
}

// TestDialFromHubComesFromTheGateway: what a node's processes (the
// stand-in kubelet's probes, skein up's readiness checks) send reaches a
// host from the gateway's address, through the host's eth0.
func TestDialFromHubComesFromTheGateway(t *testing.T) {
	n := testenv.NewNetwork(t)
	b := testenv.AddHost(t, n, "b")
	serveName(testenv.Listen(t, b, netip.AddrPortFrom(b.IP, 8080).String()), "b")
	conn, err := n.DialFromHub(t.Context(), "tcp", netip.AddrPortFrom(b.IP, 8080).String())
	if err != nil {
		t.Fatalf("dialing b from the hub: %v", err)
	}
	defer conn.Close()
	if _, client := ask(t, conn); netip.MustParseAddrPort(client).Addr() != netns.Gateway {
		t.Errorf("b saw client %s, want the gateway %s", client, netns.Gateway)
	}
}

// TestGatewayKeepsItsAddressAsHostsComeAndGo: a bridge given no address
// takes the lowest of its ports' addresses, so a host whose hub-side link
// had a lower one than any before changed the gateway's address; other
// hosts, whose ARP entries named the old one, were cut off for as long as
// those entries lived (28 s in a trial before the fix). Here host c's link
// gets the lowest unicast address there is, as a random one may be; a's
// and b's get high ones, a's the higher, so that the gateway's old address,
// were it its lowest port's, would be b's link's: the bridge would still
// take in frames sent to a's own.
func TestGatewayKeepsItsAddressAsHostsComeAndGo(t *testing.T) {
	n := testenv.NewNetwork(t)
	a := testenv.AddHost(t, n, "a")
	b := startBackends(t, n, "b")[0]
	ports := hubLinks(t, n, "master", "br0")
	setHubLinkAddress(t, n, ports[0].name, "fe:ff:ff:ff:ff:fe")
	setHubLinkAddress(t, n, ports[1].name, "fe:ff:ff:ff:ff:fc")
	askNew(t, a, b) // a's ARP entry for the gateway is fresh now
	gateway := hubLinks(t, n, "br0")[0].address

	testenv.AddHost(t, n, "c")
	setHubLinkAddress(t, n, hubLinks(t, n, "master", "br0")[2].name, "00:00:00:00:00:01")

	if got := hubLinks(t, n, "br0")[0].address; got != gateway {
		t.Errorf("the gateway's address went from %s to %s when host c joined", gateway, got)
	}
	if name := askNew(t, a, b); name != "b" {
		t.Errorf("a reached %q after c joined, want b", name)
	}
}

type hubLink struct{ name, address string }

// hubLinks lists the links `ip -br link show ARGS` shows in n's hub, by
// index (oldest first).
func hubLinks(t *testing.T, n *netns.Network, args ...string) []hubLink {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.Hub(), "-br", "link", "show"}, args...)...).Output()
	if err != nil {
		t.Fatalf("ip -br link show %s: %v", strings.Join(args, " "), err)
	}
	var links []hubLink
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) < 3 {
			t.Fatalf("ip -br link show %s: %q", strings.Join(args, " "), line)
		}
		name, _, _ := strings.Cut(fields[0], "@")
		links = append(links, hubLink{name, fields[2]})
	}
	if len(links) == 0 {
		t.Fatalf("ip -br link show %s: no links", strings.Join(args, " "))
	}
	return links
}

func setHubLinkAddress(t *testing.T, n *netns.Network, link, addr string) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", n.Hub(), "link", "set", link, "address", addr).CombinedOutput(); err != nil {
		t.Fatalf("setting %s's address: %v\n%s", link, err, out)
	}
}
