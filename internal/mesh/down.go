package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/skeinmesh/skein/internal/netns"
)

// ErrNotRunning says no mesh runs from a state directory.
var ErrNotRunning = errors.New("no mesh is running")

// Down stops the mesh running from dir and waits until it has removed what
// it made. If its supervisor died, what it left (namespaces, processes,
// files) is removed here.
func Down(ctx context.Context, dir string, log *slog.Logger) error {
	if dir == "" {
		dir = DefaultStateDir
	}
	s, ok, err := readSupervisor(dir)
	if err != nil {
		return err
	}
	if ok && s.Alive() {
		if err := syscall.Kill(s.PID, syscall.SIGTERM); err != nil {
			return fmt.Errorf("stopping the mesh (pid %d): %w", s.PID, err)
		}
		if err := waitExit(ctx, s); err != nil {
			log.Warn("the mesh did not stop in time; killing it", "pid", s.PID, "err", err)
			syscall.Kill(s.PID, syscall.SIGKILL)
			waitExit(context.Background(), s)
		}
	}
	// A supervisor that crashed or was killed left its namespaces behind.
	cleanErr := netns.CleanStale(context.Background(), log)
	if err := os.RemoveAll(dir); err != nil {
		return errors.Join(cleanErr, err)
	}
	if !ok {
		return errors.Join(cleanErr, ErrNotRunning)
	}
	return cleanErr
}

func waitExit(ctx context.Context, s netns.Owner) error {
	for s.Alive() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}
