package kubelet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skeinmesh/skein/internal/netns"
)

// stopDelay is how long a container has between SIGTERM and SIGKILL.
const stopDelay = 5 * time.Second

// command builds the process of container c: Images[c.Image] in the pod's
// host, as the container's user, with its args and env ($(VAR) references
// expanded as a kubelet does) and its volumes mounted.
func (w *podWorker) command(ctx context.Context, c corev1.Container) (*exec.Cmd, error) {
	binary, ok := w.cfg.Images[c.Image]
	if !ok {
		return nil, fmt.Errorf("container %s: no binary for image %q", c.Name, c.Image)
	}
	if len(c.Command) > 0 {
		// The image's other programs sit beside its entrypoint.
		binary = filepath.Join(filepath.Dir(binary), filepath.Base(c.Command[0]))
	}
	env, err := w.env(c)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	lookup := envLookup(env)
	args := make([]string, 0, len(c.Command)+len(c.Args))
	if len(c.Command) > 0 {
		args = append(args, c.Command[1:]...)
	}
	args = append(args, c.Args...)
	for i := range args {
		args[i] = expand(args[i], lookup)
	}

	argv := append([]string{binary}, args...)
	if u, asRoot := w.user(c); !asRoot {
		if argv, err = netns.AsUser(u, binary, args...); err != nil {
			return nil, fmt.Errorf("container %s: %w", c.Name, err)
		}
	}
	shArgs, err := w.mountedCommand(c, argv)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	cmd := w.host.Command(ctx, "sh", shArgs...)
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

// env resolves the container's env, after the API server's address
// (KUBERNETES_SERVICE_HOST and _PORT): plain values with $(VAR) references
// to earlier variables expanded, and the fieldRefs metadata.name,
// metadata.namespace, metadata.uid, spec.serviceAccountName, spec.nodeName
// and status.podIP.
func (w *podWorker) env(c corev1.Container) ([]string, error) {
	var env []string
	vars := append(slices.Clone(w.apiServerEnv), c.Env...)
	for _, e := range vars {
		value := expand(e.Value, envLookup(env))
		if from := e.ValueFrom; from != nil {
			if from.FieldRef == nil {
				return nil, fmt.Errorf("env %s: only valueFrom.fieldRef is supported", e.Name)
			}
			switch path := from.FieldRef.FieldPath; path {
			case "metadata.name":
				value = w.pod.Name
			case "metadata.namespace":
				value = w.pod.Namespace
			case "metadata.uid":
				value = string(w.pod.UID)
			case "spec.serviceAccountName":
				value = w.pod.Spec.ServiceAccountName
			case "spec.nodeName":
				value = w.cfg.NodeName
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

// envLookup finds a variable in env (NAME=value entries); the last
// definition wins.
func envLookup(env []string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for i := len(env) - 1; i >= 0; i-- {
			if value, ok := strings.CutPrefix(env[i], name+"="); ok {
				return value, true
			}
		}
		return "", false
	}
}

// expand replaces $(NAME) with the variable's value as Kubernetes does: an
// undefined reference stays as written, and $$ is a literal $.
func expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch next := s[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i++
		case next == '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if value, ok := lookup(name); ok {
				b.WriteString(value)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
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
	stop      func()        // sends SIGTERM, then SIGKILL after stopDelay
	// postStartDone and startupPassed say whether the container has
	// started in a kubelet's sense (see podWorker.started); startupFailed
	// that its startupProbe gave up and the container was killed.
	postStartDone, startupPassed, startupFailed atomic.Bool
	// The probes' state, the pod worker's goroutine's alone.
	startup, readiness, liveness probeState
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
