package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// stopGrace is how long a component gets to exit after SIGTERM before it is
// killed.
const stopGrace = 10 * time.Second

// process is one running component (etcd, kube-apiserver, ...) whose output
// goes to a log file in the cluster's directory.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // exit status, valid after done is closed
}

// spawner starts processes from one locked OS thread that lives as long as
// the cluster. The processes get SIGKILL when that thread ends (Pdeathsig):
// if the test binary dies without running its cleanups (a -timeout panic, a
// kill), no etcd or API server is left behind.
type spawner struct {
	starts chan *exec.Cmd
	errs   chan error
	quit   chan struct{}
}

func newSpawner() *spawner {
	s := &spawner{starts: make(chan *exec.Cmd), errs: make(chan error), quit: make(chan struct{})}
	go s.loop()
	return s
}

func (s *spawner) loop() {
	// Never unlocked: returning from a locked goroutine ends its thread,
	// which kills any child still running. close only calls it after the
	// children have been stopped.
	runtime.LockOSThread()
	for {
		select {
		case cmd := <-s.starts:
			s.errs <- cmd.Start()
		case <-s.quit:
			return
		}
	}
}

func (s *spawner) start(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	s.starts <- cmd
	return <-s.errs
}

// close ends the spawner's thread; processes still running are killed.
func (s *spawner) close() { close(s.quit) }

// startProcess starts cmd in dir, output to dir/name.log. The process is in
// its own process group so that stopping it reaches anything it forked.
func startProcess(s *spawner, name string, cmd *exec.Cmd, dir string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating log of %s: %w", name, err)
	}
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := s.start(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, fmt.Errorf("%s exited: %v", p.name, p.err)
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after stopGrace, and
// waits for the process to exit.
func (p *process) stop() {
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
}

// logTail returns the last n lines of the process's log.
func (p *process) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.logPath, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// waitUntil calls ready every 100ms until it returns nil, the context ends
// or one of the watched processes exits.
func waitUntil(ctx context.Context, what string, ready func(context.Context) error, watched ...*process) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = ready(ctx); last == nil {
			return nil
		}
		for _, p := range watched {
			if gone, err := p.exited(); gone {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// errNotReady is what readiness probes return before the component answers.
var errNotReady = errors.New("not ready")
