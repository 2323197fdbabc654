package identity

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// reloadDelay lets a burst of file events (three files written one by one,
// or a kubelet symlink swap) settle before the directory is read again.
const reloadDelay = 200 * time.Millisecond

// DirSource reads issuer material from a directory holding tls.crt, tls.key
// and ca.crt (a mounted Secret, or what `skein identity generate` wrote),
// and re-reads it when the directory changes.
type DirSource struct {
	issuerHolder
	dir string
}

// NewDirSource loads the issuer in dir; it fails if that issuer is not
// valid. Call Run to follow changes. A nil now means time.Now.
func NewDirSource(dir string, log *slog.Logger, now func() time.Time) (*DirSource, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	s := &DirSource{dir: dir}
	s.issuerHolder = issuerHolder{now: now, log: log, origin: dir}
	if err := s.reload(); err != nil {
		return nil, fmt.Errorf("loading issuer from %s: %w", dir, err)
	}
	return s, nil
}

// Run watches the directory until ctx is done. Kubernetes updates a mounted
// Secret by swapping a symlink inside the directory, so the directory, not
// the files, is watched.
func (s *DirSource) Run(ctx context.Context) error {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", s.dir, err)
	}
	defer watcher.Close()
	if err := watcher.Add(s.dir); err != nil {
		return fmt.Errorf("watching %s: %w", s.dir, err)
	}
	// Re-read once now: the files may have changed between NewDirSource
	// and the watch starting.
	_ = s.reload()

	settle := time.NewTimer(0)
	<-settle.C
	for {
		select {
		case <-ctx.Done():
			settle.Stop()
			return nil
		case event, ok := <-watcher.Events:
			if !ok {
				return fmt.Errorf("watching %s: watcher closed", s.dir)
			}
			s.log.Debug("issuer directory changed", "event", event.String())
			settle.Reset(reloadDelay)
		case err, ok := <-watcher.Errors:
			if !ok {
				return fmt.Errorf("watching %s: watcher closed", s.dir)
			}
			s.log.Warn("watching issuer directory", "dir", s.dir, "err", err)
		case <-settle.C:
			_ = s.reload() // replace logs a rejected issuer
		}
	}
}

func (s *DirSource) reload() error {
	var contents [3][]byte
	for i, name := range []string{IssuerCertFile, IssuerKeyFile, TrustAnchorFile} {
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			s.log.Error("reading issuer material, keeping the current issuer", "err", err)
			return err
		}
		contents[i] = data
	}
	return s.replace(contents[0], contents[1], contents[2])
}
