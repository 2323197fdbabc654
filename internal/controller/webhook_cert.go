package controller

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"

	"github.com/skeinmesh/skein/internal/dirwatch"
)

// webhookCert is the injector's serving certificate (tls.crt and tls.key
// in a directory, the mounted Secret): read once, served from memory, and
// read again when the directory changes, not at every handshake. A
// renewed pair that does not load is logged and the current one kept.
type webhookCert struct {
	dir     string
	log     *slog.Logger
	current atomic.Pointer[tls.Certificate]
}

// loadWebhookCert reads the pair in dir; it fails if there is none.
func loadWebhookCert(dir string, log *slog.Logger) (*webhookCert, error) {
	c := &webhookCert{dir: dir, log: log}
	cert, err := c.read()
	if err != nil {
		return nil, err
	}
	c.current.Store(cert)
	return c, nil
}

func (c *webhookCert) read() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(c.dir, "tls.crt"), filepath.Join(c.dir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("webhook certificate in %s: %w", c.dir, err)
	}
	return &cert, nil
}

// Run follows the directory until ctx is done.
func (c *webhookCert) Run(ctx context.Context) error {
	return dirwatch.Run(ctx, c.dir, c.log, c.reload)
}

func (c *webhookCert) reload() {
	cert, err := c.read()
	if err != nil {
		c.log.Error("new webhook certificate rejected, keeping the current one", "err", err)
		return
	}
	if old := c.current.Swap(cert); old == nil || string(old.Certificate[0]) != string(cert.Certificate[0]) {
		c.log.Info("webhook certificate loaded", "dir", c.dir, "not_after", cert.Leaf.NotAfter)
	}
}

// get is tls.Config.GetCertificate.
func (c *webhookCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.current.Load(), nil
}
