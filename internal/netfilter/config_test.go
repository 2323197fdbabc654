package netfilter

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestValidateNamesTheFieldAtFault(t *testing.T) {
	tests := []struct {
		field  string
		change func(*Config)
	}{
		{"ProxyUID", func(c *Config) { c.ProxyUID = 0 }},
		{"OutboundPort", func(c *Config) { c.OutboundPort = 70000 }},
		{"InboundPort", func(c *Config) { c.InboundPort = c.OutboundPort }},
		{"AdminPort", func(c *Config) { c.AdminPort = 0 }},
		{"SkipInboundPorts", func(c *Config) { c.SkipInboundPorts = []PortRange{{10, 5}} }},
		{"SkipOutboundPorts", func(c *Config) { c.SkipOutboundPorts = []PortRange{{0, 5}} }},
		{"SkipOutboundCIDRs", func(c *Config) { c.SkipOutboundCIDRs = []netip.Prefix{{}} }},
		{"Mode", func(c *Config) { c.Mode = "ebpf" }},
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.change(&cfg)
			var fe *FieldError
			if err := cfg.Validate(); !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("Validate() = %v, want an error about %s", err, tt.field)
			}
		})
	}
}

func TestParsePortRanges(t *testing.T) {
	got, err := ParsePortRanges(" 4190, 5000-5010,")
	if err != nil {
		t.Fatal(err)
	}
	if want := []PortRange{{4190, 4190}, {5000, 5010}}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"x", "10-5", "0", "1-70000", "5-"} {
		if _, err := ParsePortRanges(bad); err == nil {
			t.Errorf("ParsePortRanges(%q) succeeded, want error", bad)
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	got, err := ParseCIDRs("10.1.2.3/8,169.254.169.254,fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("169.254.169.254/32"),
		netip.MustParsePrefix("fd00::/8"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := ParseCIDRs("10.0.0.0/33"); err == nil {
		t.Error("accepted /33")
	}
}

func TestRenderWritesKeyRules(t *testing.T) {
	withSkips := DefaultConfig()
	withSkips.SkipInboundPorts = []PortRange{{4190, 4190}, {5000, 5010}}
	withSkips.SkipOutboundPorts = []PortRange{{3306, 3306}}
	withSkips.SkipOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tproxy := withSkips
	tproxy.Mode = ModeTProxy
	v4only := DefaultConfig()
	v4only.IPv6 = false

	tests := []struct {
		name    string
		cfg     Config
		want    []string
		notWant []string
	}{{
		name: "redirect default",
		cfg:  DefaultConfig(),
		want: []string{
			"iptables-restore --noflush",
			"ip6tables-restore --noflush",
			"-A SKEIN_INBOUND -p tcp --dport 4191 -j RETURN",
			"-A SKEIN_INBOUND -p tcp -j REDIRECT --to-ports 4143",
			"-A SKEIN_OUTBOUND -m owner --uid-owner 2102 -j RETURN",
			"-A SKEIN_OUTBOUND -o lo -j RETURN",
			"-A SKEIN_OUTBOUND -p tcp -j REDIRECT --to-ports 4140",
			"-A PREROUTING -p tcp -j SKEIN_INBOUND",
			"-A OUTPUT -p tcp -j SKEIN_OUTBOUND",
		},
		notWant: []string{"*mangle", "TPROXY", "ip -4 rule"},
	}, {
		name: "redirect with skips",
		cfg:  withSkips,
		want: []string{
			"-A SKEIN_INBOUND -p tcp --dport 4190 -j RETURN",
			"-A SKEIN_INBOUND -p tcp --dport 5000:5010 -j RETURN",
			"-A SKEIN_OUTBOUND -p tcp --dport 3306 -j RETURN",
			"-A SKEIN_OUTBOUND -d 10.0.0.0/8 -j RETURN",
			"-A SKEIN_OUTBOUND -d fd00::/8 -j RETURN",
		},
	}, {
		name: "tproxy",
		cfg:  tproxy,
		want: []string{
			"ip -4 rule add fwmark 0x539 lookup 133",
			"ip -4 route add local default dev lo table 133",
			"ip -6 rule add fwmark 0x539 lookup 133",
			"*mangle",
			"-A SKEIN_INBOUND -p tcp -m mark --mark 0x539 -j CONNMARK --save-mark",
			"-A SKEIN_INBOUND -p tcp --dport 5000:5010 -j RETURN",
			"-A SKEIN_INBOUND -p tcp -m socket --transparent -j SKEIN_DIVERT",
			"-A SKEIN_INBOUND ! -d 127.0.0.1/32 -p tcp -j TPROXY --on-port 4143 --on-ip 0.0.0.0 --tproxy-mark 0x539/0xffffffff",
			"-A SKEIN_INBOUND ! -d ::1/128 -p tcp -j TPROXY --on-port 4143",
			"-A SKEIN_DIVERT -j MARK --set-xmark 0x539/0xffffffff",
			"-A SKEIN_DIVERT -j ACCEPT",
			"-A SKEIN_CONNMARK -p tcp -m connmark --mark 0x539 -j CONNMARK --restore-mark",
			"-A OUTPUT -p tcp -j SKEIN_CONNMARK",
			"-A SKEIN_OUTBOUND -p tcp -j REDIRECT --to-ports 4140",
		},
		notWant: []string{"REDIRECT --to-ports 4143"},
	}, {
		name:    "IPv4 only",
		cfg:     v4only,
		want:    []string{"iptables-restore --noflush"},
		notWant: []string{"ip6tables"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script, err := Render(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(script, w) {
					t.Errorf("script lacks %q:\n%s", w, script)
				}
			}
			for _, nw := range tt.notWant {
				if strings.Contains(script, nw) {
					t.Errorf("script has %q:\n%s", nw, script)
				}
			}
		})
	}
}

func TestTableScriptOnlyTouchesOurChainsAndJumps(t *testing.T) {
	current := parseSave(`*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:SKEIN_INBOUND - [0:0]
:SKEIN_OUTBOUND - [0:0]
:FOREIGN - [0:0]
-A PREROUTING -p tcp -j SKEIN_INBOUND
-A OUTPUT -p tcp -j SKEIN_OUTBOUND
-A OUTPUT -p tcp -j SKEIN_OUTBOUND
-A OUTPUT -p tcp --dport 9 -j FOREIGN
-A SKEIN_OUTBOUND -j RETURN
COMMIT
`)
	want := tableRules{
		chains: []chain{{chainOutbound, []string{"-j RETURN"}}},
		jumps:  []jump{{"OUTPUT", "-p tcp -j " + chainOutbound}},
	}
	got := tableScript("nat", current, want)
	wantScript := `*nat
:SKEIN_INBOUND - [0:0]
:SKEIN_OUTBOUND - [0:0]
-D PREROUTING -p tcp -j SKEIN_INBOUND
-D OUTPUT -p tcp -j SKEIN_OUTBOUND
-A SKEIN_OUTBOUND -j RETURN
-X SKEIN_INBOUND
COMMIT
`
	if got != wantScript {
		t.Errorf("got:\n%s\nwant:\n%s", got, wantScript)
	}
	if s := tableScript("mangle", parseSave("*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"), tableRules{}); s != "" {
		t.Errorf("nothing ours and nothing wanted: got script %q, want none", s)
	}
}
