package identity

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/skeinmesh/skein/internal/dirwatch"
)

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

// Run re-reads the directory whenever it changes, until ctx is done; a
// rejected issuer is logged and the current one kept.
func (s *DirSource) Run(ctx context.Context) error {
	return dirwatch.Run(ctx, s.dir, s.log, func() { _ = s.reload() })
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
