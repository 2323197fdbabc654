package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
)

// h2specVersion is the pinned h2spec; scripts/setup.sh installs it under
// $HOME/.cache/skein/tools/h2spec-<version>/.
const h2specVersion = "v2.2.1"

// h2specExceptions are the h2spec cases the proxy may fail, each with the
// RFC's reason; docs/proxy.md ("Conformance") lists the same.
var h2specExceptions = map[string]string{
	// h2spec sends "INVALID CONNECTION PREFACE\r\n\r\n". RFC 9113 §3.4
	// binds an HTTP/2 endpoint, which the proxy is not on that connection:
	// bytes that are neither the preface nor an HTTP/1.x request line are
	// another protocol to its detection, forwarded as opaque TCP to the
	// application, whose answer h2spec reads (Go's net/http: an HTTP/1.1
	// 400, which it takes for a frame). Not closing is what lets
	// unmarked non-HTTP protocols through.
	"http2/3.5/2": "RFC 9113 §3.4 applies to HTTP/2 endpoints; detection hands non-HTTP bytes to the application",
}

// h2specPath finds the pinned h2spec ($SKEIN_H2SPEC wins), or skips.
func h2specPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SKEIN_H2SPEC"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, ".cache", "skein", "tools", "h2spec-"+h2specVersion, "h2spec")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("h2spec %s not installed at %s (scripts/setup.sh installs it)", h2specVersion, p)
	}
	return p
}

// TestH2specPassesOnTheOutboundAndInboundListeners runs h2spec against an
// h2c server (Go's net/http) through each of the proxy's listeners: from
// the meshed client, whose connection is redirected into its proxy's
// outbound listener and then crosses the mesh to the server's proxy; and
// from an unmeshed host straight to the server's inbound listener. Every
// case must pass, but for the listed exceptions.
func TestH2specPassesOnTheOutboundAndInboundListeners(t *testing.T) {
	bin := h2specPath(t)
	w := getWire(t)
	for _, side := range []struct {
		name string
		from *netns.Host
	}{{"outbound", w.client}, {"inbound", w.plain}} {
		t.Run(side.name, func(t *testing.T) {
			t.Parallel()
			report := runH2spec(t, bin, side.from, w.server.IP.String(), wirePortH2C)
			var failed []string
			for _, c := range report {
				if c.failure == "" {
					continue
				}
				if reason, ok := h2specExceptions[c.id]; ok {
					t.Logf("exception %s (%s): %s", c.id, reason, c.failure)
					continue
				}
				failed = append(failed, c.id)
				t.Errorf("h2spec %s %s\n    %s", c.id, c.name, c.failure)
			}
			t.Logf("h2spec on the %s listener: %d cases, %d failed: %v", side.name, len(report), len(failed), failed)
			if len(report) < 140 {
				t.Errorf("h2spec ran %d cases, want the 145 of its generic, HTTP/2 and HPACK suites", len(report))
			}
		})
	}
}

// h2specCase is one case of h2spec's JUnit report.
type h2specCase struct {
	id, name, failure string
}

// runH2spec runs h2spec from host against addr:port and returns its cases.
func runH2spec(t *testing.T, bin string, from *netns.Host, addr string, port int) []h2specCase {
	t.Helper()
	report := filepath.Join(t.TempDir(), "h2spec.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// -o: seconds h2spec waits for an answer; 5 for a loaded machine.
	out, err := from.Command(ctx, bin, "-h", addr, "-p", fmt.Sprint(port), "-o", "5", "-j", report).CombinedOutput()
	b, rerr := os.ReadFile(report)
	if rerr != nil {
		t.Fatalf("h2spec wrote no report (%v): %v\n%s", rerr, err, out)
	}
	var doc struct {
		Suites []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string    `xml:"classname,attr"`
				Package string    `xml:"package,attr"`
				Failure *string   `xml:"failure"`
				Error   *string   `xml:"error"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("h2spec's report: %v", err)
	}
	var cases []h2specCase
	for _, s := range doc.Suites {
		for i, c := range s.Cases {
			// h2spec's own name for a case: http2/8.1.2.2/1.
			hc := h2specCase{id: fmt.Sprintf("%s/%d", c.Package, i+1), name: c.Name}
			switch {
			case c.Failure != nil:
				hc.failure = strings.TrimSpace(*c.Failure)
			case c.Error != nil:
				hc.failure = "error: " + strings.TrimSpace(*c.Error)
			case c.Skipped != nil:
				hc.failure = "skipped"
			}
			cases = append(cases, hc)
		}
	}
	slices.SortFunc(cases, func(a, b h2specCase) int { return strings.Compare(a.id, b.id) })
	return cases
}
