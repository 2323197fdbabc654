package netns

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The hub's nat PREROUTING jumps to servicesChain, which holds one rule per
// service jumping to that service's own chain of DNAT rules.
const servicesChain = "SKEIN-SERVICES"

func hubChainsScript() string {
	return "*nat\n:" + servicesChain + " - [0:0]\n-A PREROUTING -j " + servicesChain + "\nCOMMIT\n"
}

// serviceChain names the chain of one service, e.g. SVC-198.19.0.5-80
// (at most 24 characters, within iptables' limit of 28).
func serviceChain(vip netip.AddrPort) string {
	return fmt.Sprintf("SVC-%s-%d", vip.Addr(), vip.Port())
}

// AllocateVIP hands out the next unused virtual service IP from VIPPrefix.
// It returns the zero Addr once all 65534 are used.
func (n *Network) AllocateVIP() netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	vip := n.nextVIP
	if !VIPPrefix.Contains(vip) || vip == netip.MustParseAddr("198.19.255.255") {
		return netip.Addr{}
	}
	n.nextVIP = vip.Next()
	return vip
}

// SetService makes new TCP connections to vip go to one of backends, picked
// at random per connection; an established connection keeps its backend.
// It replaces the previous backends in one atomic iptables-restore. With no
// backends, connections to vip are refused.
func (n *Network) SetService(ctx context.Context, vip netip.AddrPort, backends []netip.AddrPort) error {
	if !vip.Addr().Is4() || vip.Port() == 0 {
		return fmt.Errorf("service address %s: want IPv4 address and non-zero port", vip)
	}
	for _, b := range backends {
		if !b.Addr().Is4() || b.Port() == 0 {
			return fmt.Errorf("service %s: backend %s: want IPv4 address and non-zero port", vip, b)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock() // held across the restore so concurrent updates apply in order
	old, existed := n.services[vip]
	n.services[vip] = slices.Clone(backends)
	if err := n.restore(ctx, n.servicesScript(vip, len(old) > 0)); err != nil {
		if existed { // the kernel still has the old rules: keep the model in step
			n.services[vip] = old
		} else {
			delete(n.services, vip)
		}
		return fmt.Errorf("setting service %s: %w", vip, err)
	}
	n.log.Debug("service set", "vip", vip, "backends", backends)
	return nil
}

// DeleteService removes vip's rules; connections to it are refused.
func (n *Network) DeleteService(ctx context.Context, vip netip.AddrPort) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	old, ok := n.services[vip]
	if !ok {
		return nil
	}
	delete(n.services, vip)
	if err := n.restore(ctx, n.servicesScript(vip, len(old) > 0)); err != nil {
		n.services[vip] = old
		return fmt.Errorf("deleting service %s: %w", vip, err)
	}
	return nil
}

// servicesScript rewrites the dispatch chain for all services and the chain
// of the one that changed, in one nat transaction. A chain whose service has
// no backends (or is gone) is deleted; the dispatch chain no longer jumps to
// it by then because it is flushed and refilled earlier in the script.
// Callers hold n.mu.
func (n *Network) servicesScript(changed netip.AddrPort, chainExists bool) string {
	var b strings.Builder
	b.WriteString("*nat\n:" + servicesChain + " - [0:0]\n")
	chain := serviceChain(changed)
	backends := n.services[changed]
	if len(backends) > 0 || chainExists {
		b.WriteString(":" + chain + " - [0:0]\n")
	}

	vips := make([]netip.AddrPort, 0, len(n.services))
	for vip, bs := range n.services {
		if len(bs) > 0 {
			vips = append(vips, vip)
		}
	}
	slices.SortFunc(vips, func(a, b netip.AddrPort) int { return a.Compare(b) })
	for _, vip := range vips {
		fmt.Fprintf(&b, "-A %s -d %s/32 -p tcp --dport %d -j %s\n", servicesChain, vip.Addr(), vip.Port(), serviceChain(vip))
	}

	// Rule i catches 1/(n-i) of what the rules before it let through, so each
	// backend gets 1/n of new connections; the last rule takes the rest.
	for i, backend := range backends {
		if left := len(backends) - i; left > 1 {
			fmt.Fprintf(&b, "-A %s -p tcp -m statistic --mode random --probability %.11f -j DNAT --to-destination %s\n", chain, 1/float64(left), backend)
		} else {
			fmt.Fprintf(&b, "-A %s -p tcp -j DNAT --to-destination %s\n", chain, backend)
		}
	}
	if len(backends) == 0 && chainExists {
		b.WriteString("-X " + chain + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

func (n *Network) restore(ctx context.Context, script string) error {
	_, err := run(ctx, script, "ip", "netns", "exec", n.hub, "iptables-restore", "--noflush")
	return err
}
