// Package dirwatch follows a directory of files that are replaced as a
// whole: a mounted Kubernetes Secret (updated by a symlink swap inside the
// directory) or files renamed into place. It calls back once a burst of
// changes has settled; what to re-read is the caller's business.
package dirwatch

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/fsnotify/fsnotify"
)

// SettleDelay lets a burst of file events (several files written one by
// one, or a kubelet's symlink swap) settle before the directory is read.
const SettleDelay = 200 * time.Millisecond

// Run calls changed once when the watch has started (the files may have
// changed since the caller first read them) and then after every burst of
// changes in dir, until ctx is done. The directory, not the files, is
// watched, so that symlink swaps and renames are seen.
func Run(ctx context.Context, dir string, log *slog.Logger, changed func()) error {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	defer watcher.Close()
	if err := watcher.Add(dir); err != nil {
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	changed()

	settle := time.NewTimer(0)
	<-settle.C
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case event, ok := <-watcher.Events:
			if !ok {
				return fmt.Errorf("watching %s: watcher closed", dir)
			}
			log.Debug("directory changed", "dir", dir, "event", event.String())
			settle.Reset(SettleDelay)
		case err, ok := <-watcher.Errors:
			if !ok {
				return fmt.Errorf("watching %s: watcher closed", dir)
			}
			log.Warn("watching directory", "dir", dir, "err", err)
		case <-settle.C:
			changed()
		}
	}
}
