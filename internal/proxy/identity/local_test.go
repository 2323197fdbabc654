package identity_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/proxy/identity"
)

func TestFailedRenewalKeepsCurrentCertificate(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	id := ctrl.WorkloadID("demo", "web")
	tokenFile := ctrl.TokenFile(t, id)
	local, err := identity.New(identity.Config{
		Identity:     id.String(),
		TokenFile:    tokenFile,
		TrustAnchors: []*x509.Certificate{ctrl.Anchor},
		Client:       ctrl.Client,
		Renew:        0.00001, // a 24 h certificate is renewed after about a second
		Log:          ctrl.Log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Ready(); err == nil || !strings.Contains(err.Error(), "no certificate yet") {
		t.Fatalf("Ready before Run = %v, want no certificate yet", err)
	}
	rec := httptest.NewRecorder()
	local.StatusHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/identity", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/identity before a certificate: %d, want 503", rec.Code)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = local.Run(ctx) }()
	defer func() { cancel(); <-done }()
	identitytest.Eventually(t, 10*time.Second, local.Ready)
	first, _ := local.Certificate()

	// The token goes bad: renewals fail, the certificate stays.
	if err := os.WriteFile(tokenFile, []byte("revoked"), 0o600); err != nil {
		t.Fatal(err)
	}
	identitytest.Eventually(t, 10*time.Second, func() error {
		if !ctrl.Logs.Contains("certify failed, retrying") {
			return errors.New("no failed renewal yet")
		}
		return nil
	})
	if leaf, ok := local.Certificate(); !ok || !leaf.Equal(first) {
		t.Error("certificate dropped or replaced after a failed renewal")
	}
	if err := local.Ready(); err != nil {
		t.Errorf("Ready after a failed renewal with a valid certificate: %v", err)
	}

	rec = httptest.NewRecorder()
	local.StatusHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/identity", nil))
	var status identity.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &status); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("/identity: %d %q (%v)", rec.Code, rec.Body.String(), err)
	}
	if status.Identity != id.String() || status.Serial != first.SerialNumber.Text(16) || !status.NotAfter.Equal(first.NotAfter) {
		t.Errorf("/identity = %+v, want the current certificate of %s", status, id)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	good := identity.Config{
		Identity: "spiffe://cluster.local/ns/a/sa/b", TokenFile: "/t",
		TrustAnchors: []*x509.Certificate{ctrl.Anchor}, Client: ctrl.Client,
	}
	tests := []struct {
		name string
		edit func(*identity.Config)
		want string
	}{
		{"bad identity", func(c *identity.Config) { c.Identity = "web" }, "Identity"},
		{"no token file", func(c *identity.Config) { c.TokenFile = "" }, "TokenFile"},
		{"no anchors", func(c *identity.Config) { c.TrustAnchors = nil }, "TrustAnchors"},
		{"no client", func(c *identity.Config) { c.Client = nil }, "Client"},
		{"renew 1", func(c *identity.Config) { c.Renew = 1 }, "Renew"},
		{"negative skew", func(c *identity.Config) { c.ClockSkew = -time.Second }, "ClockSkew"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.edit(&cfg)
			if _, err := identity.New(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

// TestLaggingClockTakesCertificateWithinSkewAllowance: the controller
// backdates NotBefore by one minute; a proxy whose clock is 90 s behind sees
// the new certificate as valid 30 s from now. Within its allowance (the
// default minute) it takes it; with a 10 s allowance it refuses it.
func TestLaggingClockTakesCertificateWithinSkewAllowance(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	id := ctrl.WorkloadID("demo", "web")
	lagging := func() time.Time { return time.Now().Add(-90 * time.Second) }
	tests := []struct {
		name      string
		skew      time.Duration
		wantReady bool
	}{
		{"default allowance", 0, true},
		{"10 s allowance", 10 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local, err := identity.New(identity.Config{
				Identity:     id.String(),
				TokenFile:    ctrl.TokenFile(t, id),
				TrustAnchors: []*x509.Certificate{ctrl.Anchor},
				Client:       ctrl.Client,
				ClockSkew:    tt.skew,
				Log:          ctrl.Log,
				Now:          lagging,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = local.Run(ctx) }()
			defer func() { cancel(); <-done }()
			if tt.wantReady {
				identitytest.Eventually(t, 10*time.Second, local.Ready)
				return
			}
			identitytest.Eventually(t, 10*time.Second, func() error {
				if err := local.Ready(); err == nil || !strings.Contains(err.Error(), "certificate has expired or is not yet valid") {
					return fmt.Errorf("Ready = %v, want the certificate refused as not yet valid", err)
				}
				return nil
			})
		})
	}
}
