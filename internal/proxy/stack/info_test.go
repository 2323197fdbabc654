package stack

import (
	"net/netip"
	"testing"
)

func TestOrigDstStringFollowsOrigDst(t *testing.T) {
	ci := &ConnInfo{}
	if got := ci.OrigDstString(); got != "" {
		t.Errorf("no address: %q, want empty", got)
	}
	ci.OrigDst = netip.MustParseAddrPort("10.0.0.1:80")
	ci.CacheOrigDstString()
	if got := ci.OrigDstString(); got != "10.0.0.1:80" {
		t.Errorf("cached: %q", got)
	}
	cp := *ci // a mirrored request's copy, sent elsewhere
	cp.OrigDst = netip.AddrPort{}
	if got := cp.OrigDstString(); got != "" {
		t.Errorf("cleared copy: %q, want empty", got)
	}
	cp.OrigDst = netip.MustParseAddrPort("[fd00::1]:8080")
	if got := cp.OrigDstString(); got != "[fd00::1]:8080" {
		t.Errorf("changed copy: %q", got)
	}
}
