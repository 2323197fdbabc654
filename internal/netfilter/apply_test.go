package netfilter_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skeinmesh/skein/internal/netfilter"
	"github.com/skeinmesh/skein/internal/netns"
	"github.com/skeinmesh/skein/internal/testenv"
)

// freshHost returns a host namespace of its own (lo up, one eth0).
func freshHost(t *testing.T) *netns.Host {
	n := testenv.NewNetwork(t)
	return testenv.AddHost(t, n, "workload")
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// snapshot is everything Apply may change in h: both rulesets, the policy
// routing rules and all routes, without comments, counters and empty
// tables. (With the nf_tables backend, the first rule in a table creates
// the table, and iptables cannot delete it again; an empty table with
// ACCEPT policies filters nothing, so it counts as no table.)
func snapshot(t *testing.T, h *netns.Host) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"iptables-save"}, {"ip6tables-save"},
		{"ip", "-4", "rule"}, {"ip", "-6", "rule"},
		{"ip", "-4", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
	} {
		out, err := h.Command(t.Context(), args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
		b.WriteString(withoutEmptyTables(counters.ReplaceAllString(string(out), "[]")))
	}
	return b.String()
}

var emptyTable = regexp.MustCompile(`(?m)^\*\w+\n(:[A-Z]+ ACCEPT \[\]\n)*COMMIT\n`)

func withoutEmptyTables(save string) string {
	var lines []string
	for _, line := range strings.Split(save, "\n") {
		if !strings.HasPrefix(line, "#") {
			lines = append(lines, line)
		}
	}
	return emptyTable.ReplaceAllString(strings.Join(lines, "\n"), "")
}

func configs() map[string]netfilter.Config {
	redirect := netfilter.DefaultConfig()
	redirect.SkipInboundPorts = []netfilter.PortRange{{5000, 5010}}
	redirect.SkipOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tproxy := redirect
	tproxy.Mode = netfilter.ModeTProxy
	return map[string]netfilter.Config{"redirect": redirect, "tproxy": tproxy}
}

func TestApplyTwiceLeavesTheSameRulesAsOnce(t *testing.T) {
	for name, cfg := range configs() {
		t.Run(name, func(t *testing.T) {
			h := freshHost(t)
			if err := netfilter.Apply(t.Context(), h.Namespace, cfg, nil); err != nil {
				t.Fatal(err)
			}
			once := snapshot(t, h)
			if !strings.Contains(once, "SKEIN_OUTBOUND") {
				t.Fatalf("no rules of ours after Apply:\n%s", once)
			}
			again, err := netfilter.PlanApply(t.Context(), h.Namespace, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if s := again.String(); strings.Contains(s, "-A PREROUTING") || strings.Contains(s, "-A OUTPUT") || strings.Contains(s, "rule add") {
				t.Errorf("second plan adds jumps or rules again:\n%s", s)
			}
			if err := again.Run(t.Context(), nil); err != nil {
				t.Fatal(err)
			}
			if twice := snapshot(t, h); twice != once {
				t.Errorf("ruleset after second Apply differs.\nonce:\n%s\ntwice:\n%s", once, twice)
			}
		})
	}
}

func TestCleanupRestoresThePreviousRulesetAndKeepsForeignRules(t *testing.T) {
	h := freshHost(t)
	foreign := "*nat\n-A OUTPUT -p tcp -m tcp --dport 9 -j ACCEPT\nCOMMIT\n*mangle\n-A PREROUTING -p tcp -m tcp --dport 9 -j MARK --set-xmark 0x7/0xffffffff\nCOMMIT\n"
	cmd := h.Command(t.Context(), "iptables-restore", "--noflush")
	cmd.Stdin = strings.NewReader(foreign)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("adding foreign rules: %v: %s", err, out)
	}
	before := snapshot(t, h)

	// Switching modes on the way must not leave the other mode's rules.
	cfgs := configs()
	for _, cfg := range []netfilter.Config{cfgs["tproxy"], cfgs["redirect"], cfgs["tproxy"]} {
		if err := netfilter.Apply(t.Context(), h.Namespace, cfg, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := netfilter.Cleanup(t.Context(), h.Namespace, true, nil); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, h)
	if after != before {
		t.Errorf("ruleset after Cleanup differs from before Apply.\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if !strings.Contains(after, "-A OUTPUT -p tcp -m tcp --dport 9 -j ACCEPT") {
		t.Errorf("foreign rule gone after Cleanup:\n%s", after)
	}
	p, err := netfilter.PlanCleanup(t.Context(), h.Namespace, true)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		t.Errorf("second cleanup would still run:\n%s", p)
	}
}

// originalDst reads SO_ORIGINAL_DST, where REDIRECT leaves the address the
// client dialled.
func originalDst(conn net.Conn) (netip.AddrPort, error) {
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var dst netip.AddrPort
	var sockErr error
	err = raw.Control(func(fd uintptr) {
		// sockaddr_in is 16 bytes; IPv6Mreq (20 bytes) is a buffer large
		// enough that x/sys offers for this getsockopt.
		var mreq *unix.IPv6Mreq
		mreq, sockErr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if sockErr != nil {
			return
		}
		b := mreq.Multiaddr
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4]))
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return dst, sockErr
}

func acceptOne(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("accepting on %s: %v", ln.Addr(), err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestRedirectModeSendsWorkloadTrafficToProxyButNotProxyTraffic(t *testing.T) {
	n := testenv.NewNetwork(t)
	workload := testenv.AddHost(t, n, "workload")
	backend := testenv.AddHost(t, n, "backend")
	vip := netip.AddrPortFrom(netip.MustParseAddr("198.19.0.5"), 80)
	backendAddr := netip.AddrPortFrom(backend.IP, 8080)
	backendLn := testenv.Listen(t, backend, backendAddr.String())
	if err := n.SetService(t.Context(), vip, []netip.AddrPort{backendAddr}); err != nil {
		t.Fatal(err)
	}
	cfg := netfilter.DefaultConfig()
	if err := netfilter.Apply(t.Context(), workload.Namespace, cfg, nil); err != nil {
		t.Fatal(err)
	}
	proxyLn := testenv.Listen(t, workload, fmt.Sprintf("127.0.0.1:%d", cfg.OutboundPort))

	// The application (root here, any uid but the proxy's) dials the VIP.
	var appConn net.Conn
	if err := workload.Enter(func() (err error) {
		appConn, err = net.DialTimeout("tcp", vip.String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("app dialing %s: %v", vip, err)
	}
	defer appConn.Close()
	redirected := acceptOne(t, proxyLn)
	if dst, err := originalDst(redirected); err != nil || dst != vip {
		t.Errorf("SO_ORIGINAL_DST = %v, %v; want %s", dst, err, vip)
	}

	// The proxy's own uid goes straight to the service.
	asProxy := netns.User{UID: cfg.ProxyUID, GID: cfg.ProxyUID}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	dial := fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && echo hi >&3", vip.Addr(), vip.Port())
	if out, err := workload.CommandAs(ctx, asProxy, "bash", "-c", dial).CombinedOutput(); err != nil {
		t.Fatalf("dialing as uid %d: %v: %s", cfg.ProxyUID, err, out)
	}
	direct := acceptOne(t, backendLn)
	if src := netip.MustParseAddrPort(direct.RemoteAddr().String()).Addr(); src != workload.IP {
		t.Errorf("backend saw a connection from %s, want the workload %s", src, workload.IP)
	}
}
