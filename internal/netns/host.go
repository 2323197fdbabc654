package netns

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Host is one namespace on a Network: a pod with its own address.
type Host struct {
	Name      string     // as given to AddHost
	Namespace string     // the network namespace, usable with `ip netns exec`
	IP        netip.Addr // the host's address on eth0
}

// Command returns a command that runs inside the host's namespace as root.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Namespace, name}, args...)...)
}

// User is the identity CommandAs runs a process with.
type User struct {
	UID, GID int
	// AmbientCaps are capability names without the CAP_ prefix, such as
	// "net_admin" or "net_raw"; they survive the switch away from root.
	AmbientCaps []string
}

// CommandAs returns a command that runs inside the host's namespace as
// another user, with no supplementary groups and the given ambient
// capabilities. This is how the sidecar proxy runs: as its own uid, so
// that netfilter rules can recognise (and not redirect) its traffic.
// It needs setpriv (util-linux); without it the command fails to start.
func (h *Host) CommandAs(ctx context.Context, u User, name string, args ...string) *exec.Cmd {
	argv, err := AsUser(u, name, args...)
	cmd := h.Command(ctx, argv[0], argv[1:]...)
	if err != nil {
		cmd.Err = err
	}
	return cmd
}

// AsUser returns the command line that runs name with args as u through
// setpriv (util-linux), for CommandAs or for a wrapper of one's own. The
// error says that setpriv is missing; the command line is usable anyway
// and fails to start.
func AsUser(u User, name string, args ...string) ([]string, error) {
	setpriv, lookErr := exec.LookPath("setpriv")
	if lookErr != nil {
		setpriv = "setpriv"
		lookErr = fmt.Errorf("running as uid %d needs setpriv (util-linux): %w", u.UID, lookErr)
	}
	argv := []string{
		setpriv,
		"--reuid=" + strconv.Itoa(u.UID),
		"--regid=" + strconv.Itoa(u.GID),
		"--clear-groups",
	}
	if len(u.AmbientCaps) > 0 {
		caps := "+" + strings.Join(u.AmbientCaps, ",+")
		argv = append(argv, "--inh-caps="+caps, "--ambient-caps="+caps)
	}
	return append(append(argv, "--", name), args...), lookErr
}

// WriteFile writes a file such as "hosts" or "resolv.conf" that `ip netns
// exec` (and so Command) bind-mounts over /etc/NAME for processes in this
// host. The target /etc/NAME must exist for the bind mount to happen.
//
// The mount is of the file itself, so a process already running sees a
// change only if the file is rewritten in place, not replaced. Rewriting
// it as os.WriteFile does (truncate, then write) would let a process that
// reads it meanwhile (a name lookup) find it empty, so an unchanged file
// is left alone and a changed one is written over from its start, then
// cut to its new length.
func (h *Host) WriteFile(name string, data []byte) error {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return fmt.Errorf("file name %q: want a plain name such as hosts or resolv.conf", name)
	}
	dir := filepath.Join("/etc/netns", h.Namespace)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	path := filepath.Join(dir, name)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := overwrite(path, data); err != nil {
		return fmt.Errorf("writing %s for host %s: %w", name, h.Name, err)
	}
	return nil
}

// overwrite writes data over the file at path from its start, keeping its
// inode, and cuts what is left of the old content.
func overwrite(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, 0)
	if err == nil {
		err = f.Truncate(int64(len(data)))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Enter runs fn on an OS thread that has joined the host's network
// namespace. Sockets created in fn belong to that namespace for their whole
// life and may be used from any goroutine afterwards; goroutines started by
// fn run in the caller's namespace.
func (h *Host) Enter(fn func() error) error { return Enter(h.Namespace, fn) }

// Enter runs fn on an OS thread that has joined the named network
// namespace (one listed by `ip netns list`). See Host.Enter.
func Enter(namespace string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Go back to the original namespace afterwards: a locked goroutine
		// that exits would terminate its thread, or, on the main thread,
		// leave it wedged in the namespace, where `ip netns pids` would then
		// count this whole process as living in it. If going back fails the
		// thread stays locked, so no other goroutine ever runs on it.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- fmt.Errorf("opening current namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", namespace))
		if err != nil {
			done <- fmt.Errorf("opening namespace %s: %w", namespace, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("entering namespace %s: %w", namespace, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		done <- fnErr
	}()
	return <-done
}

// DialContext connects from inside the host: the socket lives in its
// namespace, so the host's routes and netfilter rules apply to it as to the
// host's own programs. It has net.Dialer.DialContext's signature, to plug
// into HTTP and gRPC clients.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.Enter(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
