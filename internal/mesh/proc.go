package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is one supervised program: its output goes to a log file, and
// with restart set it is started again when it exits, with a growing pause
// (as a kubelet restarts a crashing container).
type process struct {
	name    string
	command func() *exec.Cmd
	logPath string
	restart bool
	log     *slog.Logger

	stopOnce sync.Once
	stopping chan struct{}
	done     chan struct{}

	mu  sync.Mutex
	cmd *exec.Cmd
	// exited is closed when the current run ends; replaced on restart.
	exited chan struct{}
}

// startProcess starts p and supervises it until stop.
func startProcess(name, logPath string, restart bool, log *slog.Logger, command func() *exec.Cmd) (*process, error) {
	p := &process{
		name: name, command: command, logPath: logPath, restart: restart, log: log,
		stopping: make(chan struct{}), done: make(chan struct{}),
	}
	if err := p.startOnce(); err != nil {
		return nil, err
	}
	go p.supervise()
	return p, nil
}

func (p *process) startOnce() error {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := p.command()
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group: stop signals `ip netns exec`, setpriv and the
	// program together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		select {
		case <-p.stopping:
		default:
			p.log.Warn("process exited", "process", p.name, "err", err)
		}
		close(exited)
	}()
	return nil
}

// supervise restarts p when it exits, until stop.
func (p *process) supervise() {
	defer close(p.done)
	backoff := time.Second
	for {
		p.mu.Lock()
		exited := p.exited
		p.mu.Unlock()
		started := time.Now()
		select {
		case <-p.stopping:
			return
		case <-exited:
		}
		if !p.restart {
			<-p.stopping
			return
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		select {
		case <-p.stopping:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
		if err := p.startOnce(); err != nil {
			p.log.Error("restarting process", "process", p.name, "err", err)
		}
	}
}

// running reports whether the current run has not exited.
func (p *process) running() bool {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// stop asks the program to end (SIGTERM), kills it after grace, and waits.
func (p *process) stop(grace time.Duration) {
	p.stopOnce.Do(func() { close(p.stopping) })
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	<-p.done
}

// waitFor polls check until it returns nil or ctx ends.
func waitFor(ctx context.Context, what string, check func() error) error {
	var err error
	for {
		if err = check(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
