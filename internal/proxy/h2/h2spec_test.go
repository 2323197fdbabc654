package h2

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// h2specBinary finds h2spec on PATH or in $HOME/go/bin (where go install
// puts it; CI installs it there).
func h2specBinary() string {
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, "go", "bin", "h2spec")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// TestH2specConformance runs every h2spec case (RFC 9113 and HPACK)
// against a Server; all must pass.
func TestH2specConformance(t *testing.T) {
	bin := h2specBinary()
	if bin == "" {
		t.Skip("h2spec not found on PATH or in $HOME/go/bin; install it with: go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible")
	}
	body := []byte(strings.Repeat("x", 4096))
	addr, _ := serveH2(t, stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
		io.Copy(io.Discard, req.Body)
		return &stack.Response{Status: 200, Body: stack.BytesBody(body, nil)}, nil
	}), Config{})
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-h", host, "-p", port, "-o", "2").CombinedOutput()
	summary := string(out)
	if i := strings.Index(summary, "Failures:"); i >= 0 {
		summary = summary[i:]
	} else if lines := strings.Split(strings.TrimSpace(summary), "\n"); len(lines) > 0 {
		summary = lines[len(lines)-1]
	}
	if err != nil {
		t.Fatalf("h2spec: %v\n%s", err, summary)
	}
	t.Log(summary)
}
