package kubelet

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// mountedCommand wraps a container's command line in a shell that first
// bind-mounts each of the container's volumes at its mount path, then
// execs the command. `ip netns exec` gives every command a mount namespace
// of its own, so the mounts are the container's alone and vanish with it.
func (w *podWorker) mountedCommand(c corev1.Container, argv []string) ([]string, error) {
	mounts := slices.Clone(c.VolumeMounts)
	for i := range mounts {
		// /var/run/x is /run/x: nesting is judged on the real paths.
		mounts[i].MountPath = resolvePath(mounts[i].MountPath)
	}
	// A parent sorts before its children: "/run" < "/run/x".
	slices.SortStableFunc(mounts, func(a, b corev1.VolumeMount) int { return strings.Compare(a.MountPath, b.MountPath) })

	var script strings.Builder
	script.WriteString("set -e\n")
	var args []string
	param := func(v string) string {
		args = append(args, v)
		return fmt.Sprintf(`"${%d}"`, len(args))
	}
	for i, m := range mounts {
		if !filepath.IsAbs(m.MountPath) {
			return nil, fmt.Errorf("volume mount %s: mountPath %q is not absolute", m.Name, m.MountPath)
		}
		source := filepath.Join(w.dir, m.Name, m.SubPath)
		if info, err := os.Stat(source); err != nil || !info.IsDir() {
			return nil, fmt.Errorf("volume mount %s: no volume directory %s (a subPath must name a directory)", m.Name, source)
		}
		if err := w.ensureMountPoint(mounts[:i], m.MountPath); err != nil {
			return nil, fmt.Errorf("volume mount %s: %w", m.Name, err)
		}
		target := param(m.MountPath)
		fmt.Fprintf(&script, "mount --bind %s %s\n", param(source), target)
		if m.ReadOnly {
			fmt.Fprintf(&script, "mount -o remount,bind,ro %s\n", target)
		}
	}
	fmt.Fprintf(&script, "shift %d\nexec \"$@\"\n", len(args))
	return append(append([]string{"-c", script.String(), "sh"}, args...), argv...), nil
}

// resolvePath resolves the symbolic links in the part of path that exists
// on the machine.
func resolvePath(path string) string {
	path = filepath.Clean(path)
	for existing := path; ; existing = filepath.Dir(existing) {
		if resolved, err := filepath.EvalSymlinks(existing); err == nil {
			rest, _ := filepath.Rel(existing, path)
			return filepath.Join(resolved, rest)
		}
		if existing == "/" || existing == "." {
			return path
		}
	}
}

// ensureMountPoint makes sure target exists as a directory to mount on:
// inside the volume of an earlier mount that holds it, or else on the
// machine's filesystem, where the kubelet removes it again when it stops.
func (w *podWorker) ensureMountPoint(earlier []corev1.VolumeMount, target string) error {
	for i := len(earlier) - 1; i >= 0; i-- {
		e := earlier[i]
		if rel, ok := strings.CutPrefix(target, e.MountPath+"/"); ok || e.MountPath == "/" {
			if e.MountPath == "/" {
				rel = strings.TrimPrefix(target, "/")
			}
			return os.MkdirAll(filepath.Join(w.dir, e.Name, e.SubPath, rel), 0o755)
		}
	}
	return w.node.mountPoints.ensure(target)
}

// mountPoints are the directories the kubelet created on the machine's
// filesystem to mount volumes on, such as /var/run/secrets/kubernetes.io.
type mountPoints struct {
	log     *slog.Logger
	mu      sync.Mutex
	created []string // parents before children
}

// ensure creates dir and its missing parents, remembering each.
func (m *mountPoints) ensure(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var missing []string
	for d := dir; d != "/"; d = filepath.Dir(d) {
		_, err := os.Lstat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("mount point %s: %w", dir, err)
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("creating mount point %s: %w", missing[i], err)
		}
		m.created = append(m.created, missing[i])
	}
	return nil
}

// removeAll removes the directories ensure created, children first, once no
// container uses them.
func (m *mountPoints) removeAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.created) - 1; i >= 0; i-- {
		if err := os.Remove(m.created[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("removing mount point", "dir", m.created[i], "err", err)
		}
	}
	m.created = nil
}
