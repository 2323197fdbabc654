package kubelet

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// runPostStart runs a container's postStart hook, as a kubelet does right
// after starting it: an exec command inside the container (its user, env
// and mounts), an httpGet, or a sleep. Until it returns the container has
// not started; a failing hook fails the pod (a kubelet would kill and
// restart the container, which this one does not do).
func (w *podWorker) runPostStart(ctx context.Context, p *process) error {
	if p.spec.Lifecycle == nil || p.spec.Lifecycle.PostStart == nil {
		p.postStartDone.Store(true)
		return nil
	}
	hook := p.spec.Lifecycle.PostStart
	switch {
	case hook.Exec != nil:
		c := p.spec
		c.Command, c.Args = hook.Exec.Command, nil
		cmd, err := w.command(ctx, c)
		if err != nil {
			return fmt.Errorf("postStart hook: %w", err)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("postStart hook %q: %w: %s", strings.Join(hook.Exec.Command, " "), err, lastLine(out))
		}
	case hook.HTTPGet != nil:
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := w.probeHTTP(hctx, p.spec, hook.HTTPGet); err != nil {
			return fmt.Errorf("postStart hook: %w", err)
		}
	case hook.Sleep != nil:
		select {
		case <-time.After(time.Duration(hook.Sleep.Seconds) * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.log.Debug("postStart hook done", "container", p.name)
	p.postStartDone.Store(true)
	return nil
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}
