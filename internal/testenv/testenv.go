// Package testenv gives tests throw-away hosts (network namespaces from
// internal/netns) and long-running processes inside them, all removed by
// t.Cleanup. It is for tests only; `skein up` uses internal/netns directly.
package testenv

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skeinmesh/skein/internal/netns"
)

// RequireRoot skips the test unless it runs as root, which network
// namespaces and netfilter need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
}

// NewNetwork creates a network that is closed when the test ends. It skips
// the test when not root.
func NewNetwork(t testing.TB) *netns.Network {
	t.Helper()
	RequireRoot(t)
	n, err := netns.New(t.Context(), nil)
	if err != nil {
		t.Fatalf("creating network: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("closing network: %v", err)
		}
	})
	return n
}

// AddHost adds a host to n or fails the test.
func AddHost(t testing.TB, n *netns.Network, name string) *netns.Host {
	t.Helper()
	h, err := n.AddHost(t.Context(), name)
	if err != nil {
		t.Fatalf("adding host: %v", err)
	}
	return h
}

// Listen opens a TCP listener inside host h, closed when the test ends.
func Listen(t testing.TB, h *netns.Host, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := h.Enter(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listening on %s in host %s: %v", addr, h.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Process is a long-running command started by Start.
type Process struct {
	Cmd     *exec.Cmd
	LogPath string // stdout and stderr, interleaved
}

// Start starts cmd (typically from Host.Command) with its output going to
// a file under t.TempDir(). When the test ends the process is killed and
// reaped, and if the test failed the last lines of its log are printed.
func Start(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Cmd: cmd, LogPath: filepath.Join(t.TempDir(), filepath.Base(cmd.Path)+".log")}
	f, err := os.Create(p.LogPath)
	if err != nil {
		t.Fatalf("creating process log: %v", err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", cmd, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		err := cmd.Wait()
		f.Close()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Errorf("waiting for %s: %v", cmd, err)
		}
		if t.Failed() {
			t.Logf("last lines of %s (%s):\n%s", cmd, p.LogPath, lastLines(p.Log(), 30))
		}
	})
	return p
}

// Log returns everything the process has written so far.
func (p *Process) Log() string {
	data, _ := os.ReadFile(p.LogPath)
	return string(data)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
