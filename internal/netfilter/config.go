package netfilter

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Mode is how inbound connections reach the proxy.
type Mode string

const (
	// ModeRedirect uses nat REDIRECT: the app sees connections coming from
	// the proxy; the proxy reads SO_ORIGINAL_DST.
	ModeRedirect Mode = "redirect"
	// ModeTProxy uses mangle TPROXY and policy routing: the app sees the
	// client's own source address.
	ModeTProxy Mode = "tproxy"
)

// TProxyMark marks packets that policy routing delivers to local sockets
// (0x539 = 1337, as Istio). The proxy sets it with SO_MARK on connections
// it makes with a spoofed source.
const TProxyMark = 0x539

// TProxyTable is the routing table that delivers marked packets locally.
const TProxyTable = 133

// Config says which traffic goes to the proxy. The zero value is not
// useful: start from DefaultConfig.
type Config struct {
	ProxyUID          int            // traffic of this uid is never redirected (the proxy's own)
	OutboundPort      int            // the proxy's outbound listener on 127.0.0.1
	InboundPort       int            // the proxy's inbound listener
	AdminPort         int            // never redirected inbound
	SkipInboundPorts  []PortRange    // reach the app directly
	SkipOutboundPorts []PortRange    // leave the pod directly
	SkipOutboundCIDRs []netip.Prefix // leave the pod directly
	Mode              Mode
	IPv6              bool // also program ip6tables
}

// DefaultConfig returns the ports and uid the proxy uses by default.
func DefaultConfig() Config {
	return Config{
		ProxyUID:     2102,
		OutboundPort: 4140,
		InboundPort:  4143,
		AdminPort:    4191,
		Mode:         ModeRedirect,
		IPv6:         true,
	}
}

// FieldError is a Validate error; Field is the Config field at fault.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Validate reports the first field that cannot work, as a *FieldError.
func (c Config) Validate() error {
	if c.ProxyUID <= 0 {
		return fieldErr("ProxyUID", "%d: must be a positive uid (the proxy must not run as root, or all root traffic would bypass it)", c.ProxyUID)
	}
	ports := []struct {
		field string
		port  int
	}{{"OutboundPort", c.OutboundPort}, {"InboundPort", c.InboundPort}, {"AdminPort", c.AdminPort}}
	seen := map[int]string{}
	for _, p := range ports {
		if p.port < 1 || p.port > 65535 {
			return fieldErr(p.field, "%d: must be 1-65535", p.port)
		}
		if other, dup := seen[p.port]; dup {
			return fieldErr(p.field, "%d: same port as %s", p.port, other)
		}
		seen[p.port] = p.field
	}
	for _, r := range c.SkipInboundPorts {
		if err := r.validate(); err != nil {
			return &FieldError{Field: "SkipInboundPorts", Err: err}
		}
	}
	for _, r := range c.SkipOutboundPorts {
		if err := r.validate(); err != nil {
			return &FieldError{Field: "SkipOutboundPorts", Err: err}
		}
	}
	for _, p := range c.SkipOutboundCIDRs {
		if !p.IsValid() {
			return fieldErr("SkipOutboundCIDRs", "invalid prefix")
		}
	}
	if c.Mode != ModeRedirect && c.Mode != ModeTProxy {
		return fieldErr("Mode", "%q: want %q or %q", c.Mode, ModeRedirect, ModeTProxy)
	}
	return nil
}

// PortRange is an inclusive range of ports; a single port has First == Last.
type PortRange struct{ First, Last int }

func (r PortRange) validate() error {
	if r.First < 1 || r.Last > 65535 || r.First > r.Last {
		return fmt.Errorf("%s: want ports 1-65535, first <= last", r)
	}
	return nil
}

// String gives the form ParsePortRanges reads ("80" or "5000-5010").
func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(r.First)
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// iptables gives the form --dport takes ("80" or "5000:5010").
func (r PortRange) iptables() string { return strings.Replace(r.String(), "-", ":", 1) }

// ParsePortRanges reads a comma-separated list such as "4190,5000-5010".
// An empty string is an empty list.
func ParsePortRanges(s string) ([]PortRange, error) {
	var ranges []PortRange
	for _, item := range splitList(s) {
		first, last, isRange := strings.Cut(item, "-")
		var r PortRange
		var err error
		if r.First, err = strconv.Atoi(first); err != nil {
			return nil, fmt.Errorf("port %q: not a number", first)
		}
		r.Last = r.First
		if isRange {
			if r.Last, err = strconv.Atoi(last); err != nil {
				return nil, fmt.Errorf("port %q: not a number", last)
			}
		}
		if err := r.validate(); err != nil {
			return nil, err
		}
		ranges = append(ranges, r)
	}
	return ranges, nil
}

// ParseCIDRs reads a comma-separated list of prefixes such as
// "10.0.0.0/8,fd00::/8"; a bare address means just that address.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var prefixes []netip.Prefix
	for _, item := range splitList(s) {
		if !strings.Contains(item, "/") {
			addr, err := netip.ParseAddr(item)
			if err != nil {
				return nil, fmt.Errorf("%q: not an address or prefix", item)
			}
			prefixes = append(prefixes, netip.PrefixFrom(addr, addr.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("%q: not an address or prefix", item)
		}
		prefixes = append(prefixes, p.Masked())
	}
	return prefixes, nil
}

func splitList(s string) []string {
	var items []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}
