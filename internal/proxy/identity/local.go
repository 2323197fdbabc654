package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"

	"github.com/skeinmesh/skein/internal/pki"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

// DefaultClockSkew is how far ahead of this proxy's clock a new
// certificate's NotBefore may be and the certificate still be taken.
const DefaultClockSkew = time.Minute

// certifyTimeout bounds one Certify call.
const certifyTimeout = 10 * time.Second

// Config is what the proxy's identity needs.
type Config struct {
	// Identity is the workload's SPIFFE ID.
	Identity string
	// TokenFile holds the token proving Identity. It is re-read before each
	// Certify: the kubelet (or `skein up`) refreshes it.
	TokenFile string
	// TrustAnchors are the mesh's roots at start. Anchors, when given,
	// holds them instead and is shared with the proxy's other TLS configs
	// (the controller connection); the controller may replace them.
	TrustAnchors []*x509.Certificate
	Anchors      *Anchors
	// Client calls the controller's identity service.
	Client identitypb.IdentityClient
	// Renew is the fraction of the certificate's life (from when it was
	// received) after which it is renewed; default DefaultRenew.
	Renew float64
	// ClockSkew is how far this proxy's clock may lag the controller's: a
	// certificate whose NotBefore is at most that far ahead is taken (the
	// controller also backdates NotBefore by its own allowance). Zero
	// means DefaultClockSkew; negative is refused.
	ClockSkew time.Duration
	Log       *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Validate checks the config, fills in defaults and returns the parsed
// identity.
func (c *Config) Validate() (spiffeid.ID, error) {
	id, err := spiffeid.FromString(c.Identity)
	switch {
	case err != nil:
		return spiffeid.ID{}, fmt.Errorf("identity config: Identity %q: %w", c.Identity, err)
	case c.TokenFile == "":
		return spiffeid.ID{}, errors.New("identity config: TokenFile is required")
	case len(c.TrustAnchors) == 0 && c.Anchors == nil:
		return spiffeid.ID{}, errors.New("identity config: TrustAnchors is empty")
	case c.Client == nil:
		return spiffeid.ID{}, errors.New("identity config: Client is required")
	case c.Renew < 0 || c.Renew >= 1:
		return spiffeid.ID{}, fmt.Errorf("identity config: Renew %v is not in (0, 1)", c.Renew)
	case c.ClockSkew < 0:
		return spiffeid.ID{}, fmt.Errorf("identity config: ClockSkew %s is negative", c.ClockSkew)
	}
	if c.Renew == 0 {
		c.Renew = DefaultRenew
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return id, nil
}

// Local is this workload's identity: its key, its current certificate and
// the TLS configs built on them. The private key has no exported path out.
type Local struct {
	cfg     Config
	sched   schedule
	id      spiffeid.ID
	key     *ecdsa.PrivateKey
	csr     []byte
	anchors *Anchors
	current atomic.Pointer[x509svid.SVID] // nil until the first certificate
	lastErr atomic.Pointer[error]         // why the last Certify failed
	// renewSoon asks Run to renew within the duration sent (a new issuer
	// or anchors seen on WatchTrustBundle).
	renewSoon chan time.Duration
	// reportSoon asks WatchTrustBundle to report what is trusted and held.
	reportSoon chan struct{}
}

// New validates cfg and makes the workload's key in memory.
func New(cfg Config) (*Local, error) {
	id, err := cfg.Validate()
	if err != nil {
		return nil, err
	}
	key, err := pki.GenerateKey()
	if err != nil {
		return nil, err
	}
	csr, err := pki.NewCSR(key, id.URL())
	if err != nil {
		return nil, err
	}
	anchors := cfg.Anchors
	if anchors == nil {
		if anchors, err = NewAnchors(id.TrustDomain(), cfg.TrustAnchors, cfg.Log); err != nil {
			return nil, err
		}
	}
	return &Local{
		cfg:        cfg,
		sched:      schedule{renew: cfg.Renew},
		id:         id,
		key:        key,
		csr:        csr,
		anchors:    anchors,
		renewSoon:  make(chan time.Duration, 1),
		reportSoon: make(chan struct{}, 1),
	}, nil
}

// ID is the workload's SPIFFE ID.
func (l *Local) ID() spiffeid.ID { return l.id }

// Certificate is the current leaf certificate, if one is held.
func (l *Local) Certificate() (*x509.Certificate, bool) {
	svid := l.current.Load()
	if svid == nil {
		return nil, false
	}
	return svid.Certificates[0], true
}

// Ready is nil once a certificate valid now is held, else says why not.
func (l *Local) Ready() error {
	leaf, ok := l.Certificate()
	if ok && l.cfg.Now().Before(leaf.NotAfter) {
		return nil
	}
	reason := "no certificate yet"
	if ok {
		reason = "certificate expired at " + leaf.NotAfter.UTC().Format(time.RFC3339)
	}
	if last := l.lastErr.Load(); last != nil {
		return fmt.Errorf("%s: last Certify failed: %w", reason, *last)
	}
	return errors.New(reason)
}

// Run gets a certificate, then renews it each time Renew of its life has
// passed, until ctx is done. A failed Certify is retried with jittered
// exponential back-off, never waiting past the current certificate's
// expiry; the current certificate stays in use meanwhile.
func (l *Local) Run(ctx context.Context) error {
	failures := 0
	for {
		wait, err := l.certify(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			l.lastErr.Store(&err)
			failures++
			var notAfter time.Time
			if leaf, ok := l.Certificate(); ok {
				notAfter = leaf.NotAfter
			}
			wait = l.sched.retryAfter(failures, l.cfg.Now(), notAfter)
			l.cfg.Log.Warn("certify failed, retrying", "identity", l.id.String(), "err", err, "in", wait, "failures", failures)
		} else {
			l.lastErr.Store(nil)
			failures = 0
		}
		if !l.sleep(ctx, wait) {
			return nil
		}
	}
}

// sleep waits for d, or less when asked to renew sooner; false when ctx
// is done.
func (l *Local) sleep(ctx context.Context, d time.Duration) bool {
	due := time.Now().Add(d)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case soon := <-l.renewSoon:
			if at := time.Now().Add(soon); at.Before(due) {
				due = at
				timer.Reset(soon)
			}
		}
	}
}

// certify asks for a certificate and, on success, swaps it in and returns
// how long to wait before renewing it.
func (l *Local) certify(ctx context.Context) (time.Duration, error) {
	token, err := os.ReadFile(l.cfg.TokenFile)
	if err != nil {
		return 0, fmt.Errorf("reading token: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, certifyTimeout)
	defer cancel()
	// Wait for ready: while the controller is unreachable the call waits
	// (up to certifyTimeout) for the connection instead of failing at once
	// with gRPC's last dial error, so a renewal goes through as soon as the
	// controller is back rather than at the next retry after that.
	resp, err := l.cfg.Client.Certify(ctx, &identitypb.CertifyRequest{
		Identity:                  l.id.String(),
		Token:                     token,
		CertificateSigningRequest: l.csr,
	}, grpc.WaitForReady(true))
	if err != nil {
		return 0, fmt.Errorf("certify %s: %w", l.id, err)
	}
	svid, anchors, err := l.checkResponse(resp)
	if err != nil {
		return 0, err
	}
	l.current.Store(svid)
	if anchors != nil {
		if _, err := l.anchors.set(anchors, "certify"); err != nil {
			return 0, err
		}
	}
	l.askReport()
	leaf := svid.Certificates[0]
	now := l.cfg.Now()
	l.cfg.Log.Info("certificate updated", "identity", l.id.String(),
		"serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
	return l.sched.renewAfter(now, leaf.NotAfter), nil
}

// checkResponse makes sure the certificate is for this key and identity and
// chains to the trust anchors before it is used: the anchors the answer
// carries (the controller's current ones, which came over a connection
// verified against the anchors held), or those held when it carries none.
// It returns the anchors sent, if any.
func (l *Local) checkResponse(resp *identitypb.CertifyResponse) (*x509svid.SVID, []*x509.Certificate, error) {
	var sent []*x509.Certificate
	var bundle x509bundle.Source = l.anchors
	if raw := resp.GetTrustAnchors(); len(raw) > 0 {
		var err error
		if sent, err = parseAnchors(raw); err != nil {
			return nil, nil, fmt.Errorf("certificate from the identity service: %w", err)
		}
		bundle = x509bundle.FromX509Authorities(l.id.TrustDomain(), sent)
	}
	raw := append([][]byte{resp.GetLeafCertificate()}, resp.GetIntermediateCertificates()...)
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("parsing certificate %d of the response: %w", i, err)
		}
		certs[i] = cert
	}
	id, _, err := x509svid.Verify(certs, bundle, x509svid.WithTime(l.verifyTime(certs[0])))
	if err != nil {
		return nil, nil, fmt.Errorf("certificate from the identity service: %w", err)
	}
	if id != l.id {
		return nil, nil, fmt.Errorf("certificate from the identity service is for %s, not %s", id, l.id)
	}
	if !l.key.PublicKey.Equal(certs[0].PublicKey) {
		return nil, nil, errors.New("certificate from the identity service is not for this proxy's key")
	}
	return &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: l.key}, sent, nil
}

// verifyTime is the time to check a new certificate at: now, or its
// NotBefore when that is ahead of this proxy's clock by no more than the
// clock-skew allowance, so that a proxy whose clock lags the controller's
// still takes the certificate it was just given.
func (l *Local) verifyTime(leaf *x509.Certificate) time.Time {
	now := l.cfg.Now()
	if now.Before(leaf.NotBefore) && !leaf.NotBefore.After(now.Add(l.cfg.ClockSkew)) {
		l.cfg.Log.Warn("certificate is not valid yet by this proxy's clock; taking it within the clock-skew allowance",
			"not_before", leaf.NotBefore, "now", now, "clock_skew", l.cfg.ClockSkew)
		return leaf.NotBefore
	}
	return now
}
