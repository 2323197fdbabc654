package mesh

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/skeinmesh/skein/internal/netns"
)

// DefaultStateDir is where a running mesh keeps its files: one mesh per
// machine.
const DefaultStateDir = "/run/skein/mesh"

// Files under the state directory.
const (
	pidFile       = "supervisor.json"
	readyFile     = "ready"
	APISocketFile = "api.sock"
	identityDir   = "identity"
	controllerDir = "controller"
	tokensDir     = "tokens"
	homesDir      = "homes"
	LogsDir       = "logs"
	prometheusDir = "prometheus"
)

// readSupervisor returns the recorded supervisor of the mesh in dir; ok is
// false when there is none.
func readSupervisor(dir string) (netns.Owner, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, pidFile))
	if errors.Is(err, fs.ErrNotExist) {
		return netns.Owner{}, false, nil
	}
	if err != nil {
		return netns.Owner{}, false, err
	}
	var s netns.Owner
	if err := json.Unmarshal(b, &s); err != nil {
		return netns.Owner{}, false, fmt.Errorf("%s: %w", filepath.Join(dir, pidFile), err)
	}
	return s, true, nil
}

// Running reports the PID of the mesh running from dir, if one is.
func Running(dir string) (int, bool) {
	s, ok, err := readSupervisor(dir)
	if err != nil || !ok || !s.Alive() {
		return 0, false
	}
	return s.PID, true
}

// Ready reports whether the mesh in dir has finished starting.
func Ready(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, readyFile))
	return err == nil
}

// prepareStateDir makes a fresh state directory, refusing when a mesh is
// running from it and clearing what a crashed one left.
func prepareStateDir(dir string) error {
	if pid, ok := Running(dir); ok {
		return fmt.Errorf("a mesh is already running (pid %d); run `skein down` first", pid)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clearing %s: %w", dir, err)
	}
	for _, d := range []string{dir, filepath.Join(dir, identityDir), filepath.Join(dir, controllerDir),
		filepath.Join(dir, tokensDir), filepath.Join(dir, homesDir), filepath.Join(dir, LogsDir), filepath.Join(dir, prometheusDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// Tokens and homes: each file in them is for one user; nobody lists them.
	for _, d := range []string{tokensDir, homesDir} {
		if err := os.Chmod(filepath.Join(dir, d), 0o711); err != nil {
			return err
		}
	}
	b, _ := json.Marshal(netns.CurrentOwner())
	return os.WriteFile(filepath.Join(dir, pidFile), b, 0o644)
}

func isDir(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}
