package netfilter

import (
	"fmt"
	"strconv"
)

// family is one IP version with its tools and loopback address.
type family struct {
	name     string // for logs and errors
	restore  string // iptables-restore or ip6tables-restore
	save     string
	ipFlag   string // -4 or -6
	loopback string // the loopback address as a /32 or /128
	anyAddr  string // for TPROXY --on-ip
}

var (
	ipv4 = family{name: "IPv4", restore: "iptables-restore", save: "iptables-save", ipFlag: "-4",
		loopback: "127.0.0.1/32", anyAddr: "0.0.0.0"}
	ipv6Family = family{name: "IPv6", restore: "ip6tables-restore", save: "ip6tables-save", ipFlag: "-6",
		loopback: "::1/128", anyAddr: "::"}
)

func (c Config) families() []family {
	if c.IPv6 {
		return []family{ipv4, ipv6Family}
	}
	return []family{ipv4}
}

// Chain names, per table. Cleanup removes every one of them that exists.
const (
	chainInbound  = "SKEIN_INBOUND"  // nat (redirect) or mangle (tproxy), from PREROUTING
	chainOutbound = "SKEIN_OUTBOUND" // nat, from OUTPUT
	chainDivert   = "SKEIN_DIVERT"   // mangle: mark and accept packets of existing transparent sockets
	chainConnmark = "SKEIN_CONNMARK" // mangle, from OUTPUT: restore the tproxy mark on replies
)

// tables in the order scripts touch them.
var tables = []string{"mangle", "nat"}

var ownChains = map[string][]string{
	"nat":    {chainInbound, chainOutbound},
	"mangle": {chainInbound, chainDivert, chainConnmark},
}

// chain is one of our chains and its rules, each without "-A CHAIN".
type chain struct {
	name  string
	rules []string
}

// jump is a rule in a built-in chain that sends traffic to one of ours. Its
// spec is written exactly as iptables-save prints it, so that an existing
// jump is recognised by plain string comparison.
type jump struct {
	from string // PREROUTING or OUTPUT
	spec string // e.g. "-p tcp -j SKEIN_INBOUND"
}

func (j jump) rule() string { return "-A " + j.from + " " + j.spec }

// tableRules is what one table should contain of ours.
type tableRules struct {
	chains []chain
	jumps  []jump
}

// desiredRules returns, per table, the chains and jumps cfg needs in family f.
func desiredRules(cfg Config, f family) map[string]tableRules {
	out := map[string]tableRules{}
	nat := tableRules{
		chains: []chain{outboundChain(cfg, f)},
		jumps:  []jump{{"OUTPUT", "-p tcp -j " + chainOutbound}},
	}
	switch cfg.Mode {
	case ModeTProxy:
		out["mangle"] = tproxyInbound(cfg, f)
	default:
		nat.chains = append([]chain{redirectInbound(cfg)}, nat.chains...)
		nat.jumps = append([]jump{{"PREROUTING", "-p tcp -j " + chainInbound}}, nat.jumps...)
	}
	out["nat"] = nat
	return out
}

// inboundSkips are the RETURN rules for ports that never go to the proxy.
func inboundSkips(cfg Config) []string {
	rules := []string{"-p tcp --dport " + strconv.Itoa(cfg.AdminPort) + " -j RETURN"}
	for _, r := range cfg.SkipInboundPorts {
		rules = append(rules, "-p tcp --dport "+r.iptables()+" -j RETURN")
	}
	return rules
}

func redirectInbound(cfg Config) chain {
	rules := inboundSkips(cfg)
	rules = append(rules, fmt.Sprintf("-p tcp -j REDIRECT --to-ports %d", cfg.InboundPort))
	return chain{chainInbound, rules}
}

func outboundChain(cfg Config, f family) chain {
	rules := []string{
		fmt.Sprintf("-m owner --uid-owner %d -j RETURN", cfg.ProxyUID),
		"-o lo -j RETURN", // see the package comment: traffic inside the pod bypasses the proxy
	}
	for _, r := range cfg.SkipOutboundPorts {
		rules = append(rules, "-p tcp --dport "+r.iptables()+" -j RETURN")
	}
	for _, p := range cfg.SkipOutboundCIDRs {
		if p.Addr().Is4() == (f.ipFlag == "-4") {
			rules = append(rules, "-d "+p.String()+" -j RETURN")
		}
	}
	rules = append(rules, fmt.Sprintf("-p tcp -j REDIRECT --to-ports %d", cfg.OutboundPort))
	return chain{chainOutbound, rules}
}

func tproxyInbound(cfg Config, f family) tableRules {
	mark := fmt.Sprintf("0x%x", TProxyMark)
	inbound := []string{
		// The proxy's own connections to the app (spoofed source, SO_MARK)
		// arrive on lo already marked: remember the mark on the connection
		// so OUTPUT can put it back on the app's replies.
		"-p tcp -m mark --mark " + mark + " -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff",
		"-p tcp -m mark --mark " + mark + " -j RETURN",
		"-i lo -j RETURN",
	}
	inbound = append(inbound, inboundSkips(cfg)...)
	inbound = append(inbound,
		"-p tcp -m socket --transparent -j "+chainDivert,
		fmt.Sprintf("! -d %s -p tcp -j TPROXY --on-port %d --on-ip %s --tproxy-mark %s/0xffffffff",
			f.loopback, cfg.InboundPort, f.anyAddr, mark),
	)
	return tableRules{
		chains: []chain{
			{chainInbound, inbound},
			{chainDivert, []string{"-j MARK --set-xmark " + mark + "/0xffffffff", "-j ACCEPT"}},
			{chainConnmark, []string{"-p tcp -m connmark --mark " + mark + " -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff"}},
		},
		jumps: []jump{
			{"PREROUTING", "-p tcp -j " + chainInbound},
			{"OUTPUT", "-p tcp -j " + chainConnmark},
		},
	}
}
