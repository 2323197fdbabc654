package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/skeinmesh/skein/internal/release"
)

// FortioVersion is the load generator's pinned version; newer ones do not
// install with this project's Go toolchain.
const FortioVersion = "v1.68.2"

// binaries are the programs a benchmark runs.
type binaries struct {
	proxy, init, fortio string
	// controller and cli (skein, for identity material) serve the
	// skein-mtls scenario and the control-plane benchmark.
	controller, cli string
}

// prepareBinaries builds Skein's binaries into dir and installs fortio
// into a per-version cache directory, unless it is already there.
func prepareBinaries(ctx context.Context, moduleRoot, dir string, log *slog.Logger) (binaries, error) {
	b := binaries{
		proxy:      filepath.Join(dir, "skein-proxy"),
		init:       filepath.Join(dir, "skein-init"),
		controller: filepath.Join(dir, "skein-controller"),
		cli:        filepath.Join(dir, "skein"),
	}
	log.Info("building skein-proxy, skein-init, skein-controller and skein")
	// As `make build` builds them (internal/release).
	if _, err := runTool(ctx, moduleRoot, release.Environ(), "go", "build", "-tags", release.Tags, "-o", dir+"/",
		"./cmd/skein-proxy", "./cmd/skein-init", "./cmd/skein-controller", "./cmd/skein"); err != nil {
		return b, fmt.Errorf("building Skein: %w", err)
	}
	fortio, err := installFortio(ctx, log)
	if err != nil {
		return b, err
	}
	b.fortio = fortio
	return b, nil
}

// installFortio returns the cached fortio binary, installing it first with
// `go install` when it is missing.
func installFortio(ctx context.Context, log *slog.Logger) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding a cache directory for fortio: %w", err)
	}
	bin := filepath.Join(cache, "skein", "tools", "fortio-"+FortioVersion)
	path := filepath.Join(bin, "fortio")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	log.Info("installing fortio", "version", FortioVersion, "dir", bin)
	env := append(os.Environ(), "GOBIN="+bin)
	if _, err := runTool(ctx, os.TempDir(), env, "go", "install", "fortio.org/fortio@"+FortioVersion); err != nil {
		return "", fmt.Errorf("installing fortio %s: %w", FortioVersion, err)
	}
	return path, nil
}

// ModuleRoot returns the directory of the go.mod that governs the
// current directory.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := runTool(ctx, "", nil, "go", "env", "GOMOD")
	if err != nil {
		return "", fmt.Errorf("finding Skein's module: %w", err)
	}
	gomod := strings.TrimSpace(out)
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside Skein's module: run from the repository (go run ./bench/cmd/skein-bench)")
	}
	return filepath.Dir(gomod), nil
}

// runTool runs a program to completion in dir and returns its stdout; the
// error carries the command line and what the program printed on stderr.
func runTool(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// peerPackages maps each peer proxy's program to the Debian package that
// ships it.
var peerPackages = map[string]string{
	"haproxy": "haproxy",
	"nginx":   "nginx",
	"caddy":   "caddy",
}

// installPeers installs, with apt-get, the Debian packages of the peer
// programs that are not on PATH yet, and returns every program's path.
// The packages' own services are not started: policy-rc.d in containers,
// and the bench runs its own instances anyway.
func installPeers(ctx context.Context, programs []string, log *slog.Logger) (map[string]string, error) {
	paths := map[string]string{}
	var missing []string
	for _, prog := range programs {
		if path, err := exec.LookPath(prog); err == nil {
			paths[prog] = path
			continue
		}
		missing = append(missing, peerPackages[prog])
	}
	if len(missing) == 0 {
		return paths, nil
	}
	log.Info("installing peer proxies with apt-get", "packages", missing)
	if err := aptInstall(ctx, missing...); err != nil {
		return nil, err
	}
	for _, prog := range programs {
		path, err := exec.LookPath(prog)
		if err != nil {
			return nil, fmt.Errorf("%s: not on PATH after installing its package: %w", prog, err)
		}
		paths[prog] = path
	}
	return paths, nil
}

// aptInstall installs Debian packages with apt-get.
func aptInstall(ctx context.Context, packages ...string) error {
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if _, err := runTool(ctx, "", env, "apt-get", "update", "-qq"); err != nil {
		return fmt.Errorf("installing %s: %w", strings.Join(packages, ", "), err)
	}
	args := append([]string{"install", "-y", "-qq", "--no-install-recommends"}, packages...)
	if _, err := runTool(ctx, "", env, "apt-get", args...); err != nil {
		return fmt.Errorf("installing %s: %w", strings.Join(packages, ", "), err)
	}
	return nil
}
