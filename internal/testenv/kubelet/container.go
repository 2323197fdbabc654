package kubelet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skeinmesh/skein/internal/netns"
)

// stopDelay is how long a container has between SIGTERM and SIGKILL.
const stopDelay = 5 * time.Second

// command builds the process of container c: Images[c.Image] in the pod's
// host, as the container's user, with its args and env and every mount
// path rewritten to the volume's directory.
func (w *podWorker) command(ctx context.Context, c corev1.Container) (*exec.Cmd, error) {
	binary, ok := w.cfg.Images[c.Image]
	if !ok {
		return nil, fmt.Errorf("container %s: no binary for image %q", c.Name, c.Image)
	}
	rewrite := w.mountRewriter(c)
	args := make([]string, 0, len(c.Command)+len(c.Args))
	if len(c.Command) > 0 {
		args = append(args, c.Command[1:]...)
	}
	args = append(args, c.Args...)
	for i := range args {
		args[i] = rewrite(args[i])
	}
	env, err := w.env(c, rewrite)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.Name, err)
	}

	var cmd *exec.Cmd
	if u, asRoot := w.user(c); asRoot {
		cmd = w.host.Command(ctx, binary, args...)
	} else {
		cmd = w.host.CommandAs(ctx, u, binary, args...)
	}
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOSTNAME=" + w.pod.Name}, env...)
	cmd.Dir = w.dir
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopDelay
	return cmd, nil
}

// user is the identity the container runs as; asRoot when it sets no
// runAsUser (or 0), which needs no setpriv.
func (w *podWorker) user(c corev1.Container) (u netns.User, asRoot bool) {
	var uid, gid *int64
	if psc := w.pod.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
		if sc.Capabilities != nil {
			for _, capability := range sc.Capabilities.Add {
				name := strings.TrimPrefix(strings.ToLower(string(capability)), "cap_")
				u.AmbientCaps = append(u.AmbientCaps, name)
			}
		}
	}
	if uid == nil || *uid == 0 {
		return u, true
	}
	u.UID = int(*uid)
	if gid != nil {
		u.GID = int(*gid)
	}
	return u, false
}

// env resolves the container's env: plain values (with mount paths
// rewritten) and the fieldRefs metadata.name, metadata.namespace and
// status.podIP.
func (w *podWorker) env(c corev1.Container, rewrite func(string) string) ([]string, error) {
	var env []string
	for _, e := range c.Env {
		value := rewrite(e.Value)
		if from := e.ValueFrom; from != nil {
			if from.FieldRef == nil {
				return nil, fmt.Errorf("env %s: only valueFrom.fieldRef is supported", e.Name)
			}
			switch path := from.FieldRef.FieldPath; path {
			case "metadata.name":
				value = w.pod.Name
			case "metadata.namespace":
				value = w.pod.Namespace
			case "status.podIP":
				value = w.host.IP.String()
			default:
				return nil, fmt.Errorf("env %s: fieldRef %s is not supported", e.Name, path)
			}
		}
		env = append(env, e.Name+"="+value)
	}
	return env, nil
}

// mountRewriter returns a function that replaces a leading mount path of
// container c, in a whole value or after the "=" of a "--flag=value", with
// the directory that holds the volume on this machine.
func (w *podWorker) mountRewriter(c corev1.Container) func(string) string {
	var rewrite func(string) string
	rewrite = func(s string) string {
		for _, m := range c.VolumeMounts {
			mountPath := strings.TrimSuffix(m.MountPath, "/")
			if s == mountPath || strings.HasPrefix(s, mountPath+"/") {
				return filepath.Join(w.dir, m.Name, m.SubPath) + strings.TrimPrefix(s, mountPath)
			}
		}
		if flag, value, ok := strings.Cut(s, "="); ok && strings.HasPrefix(flag, "-") {
			return flag + "=" + rewrite(value)
		}
		return s
	}
	return rewrite
}

// process is one started container.
type process struct {
	name      string
	spec      corev1.Container
	init      bool // an init container (or sidecar)
	startedAt time.Time
	cmd       *exec.Cmd
	logPath   string
	log       *os.File
	done      chan struct{} // closed when the process has exited
	err       error         // why it exited; read after done
}

func startProcess(cmd *exec.Cmd, c corev1.Container, init bool, logPath string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("container %s: creating log: %w", c.Name, err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("container %s: starting %s: %w", c.Name, cmd, err)
	}
	return &process{
		name: c.Name, spec: c, init: init, startedAt: time.Now(),
		cmd: cmd, logPath: logPath, log: f, done: make(chan struct{}),
	}, nil
}

// wait reaps the process; it returns when the process has exited, which the
// worker's context brings about.
func (p *process) wait() {
	p.err = p.cmd.Wait()
	p.log.Close()
	close(p.done)
}

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}
