package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/pki"
	proxyidentity "github.com/skeinmesh/skein/internal/proxy/identity"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestGeneratedTrustAndTokenGetACertificate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "trust")
	out, err := run(t, "identity", "generate", "--trust-domain", "mesh.test", "--out", dir, "-o", "json")
	if err != nil {
		t.Fatalf("generate: %v\n%s", err, out)
	}
	var files generatedFiles
	if err := json.Unmarshal([]byte(out), &files); err != nil {
		t.Fatalf("generate -o json: %v\n%s", err, out)
	}
	for _, key := range []string{files.IssuerKey, files.JoinTokenKey} {
		if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", key, fi.Mode().Perm(), err)
		}
	}
	if _, err := run(t, "identity", "generate", "--trust-domain", "mesh.test", "--out", dir); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second generate without --force: %v, want a refusal", err)
	}

	id := "spiffe://mesh.test/ns/vm/sa/billing"
	token, err := run(t, "identity", "token", "--key", files.JoinTokenKey, "--identity", id, "--ttl", "10m")
	if err != nil {
		t.Fatalf("token: %v\n%s", err, token)
	}

	ctrl := identitytest.Start(t, identitytest.Options{TrustDomain: "mesh.test", Dir: dir})
	resp, err := ctrl.Client.Certify(context.Background(), &identitypb.CertifyRequest{
		Identity:                  id,
		Token:                     []byte(strings.TrimSpace(token)),
		CertificateSigningRequest: csrFor(t, id),
	})
	if err != nil {
		t.Fatalf("Certify with the CLI's token: %v", err)
	}
	if !resp.GetValidUntil().AsTime().After(time.Now()) {
		t.Errorf("valid_until %s is not in the future", resp.GetValidUntil().AsTime())
	}

	// A one-shot token says its ID and is good for one certificate.
	out, err = run(t, "identity", "token", "--key", files.JoinTokenKey, "--identity", id, "--ttl", "10m", "--one-shot", "-o", "json")
	if err != nil {
		t.Fatalf("token --one-shot: %v\n%s", err, out)
	}
	var oneShot joinToken
	if err := json.Unmarshal([]byte(out), &oneShot); err != nil || !oneShot.OneShot || len(oneShot.ID) != 32 {
		t.Fatalf("token --one-shot -o json: %+v, %v; want one_shot true and a 32-digit id", oneShot, err)
	}
	for i, want := range []string{"", "one-shot join token " + oneShot.ID + " was already used"} {
		_, err := ctrl.Client.Certify(context.Background(), &identitypb.CertifyRequest{
			Identity: id, Token: []byte(oneShot.Token), CertificateSigningRequest: csrFor(t, id),
		})
		if (want == "" && err != nil) || (want != "" && (err == nil || !strings.Contains(err.Error(), want))) {
			t.Fatalf("use %d of the one-shot token: %v, want %q", i+1, err, want)
		}
	}
}

func TestIdentityShowPrintsProxyStatus(t *testing.T) {
	want := proxyidentity.Status{
		Identity: "spiffe://cluster.local/ns/demo/sa/web", Issuer: "CN=skein issuer cluster.local",
		NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), Serial: "abc123",
	}
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/identity" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(want)
	}))
	defer admin.Close()
	addr := strings.TrimPrefix(admin.URL, "http://")

	out, err := run(t, "identity", "show", "--admin", addr, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got proxyidentity.Status
	if err := json.Unmarshal([]byte(out), &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("show -o json = %+v (%v), want %+v", got, err, want)
	}
	out, err = run(t, "identity", "show", "--admin", addr)
	if err != nil || !strings.Contains(out, want.Identity) || !strings.Contains(out, "abc123") {
		t.Errorf("show table = %q (%v)", out, err)
	}
}

func csrFor(t *testing.T, id string) []byte {
	t.Helper()
	key, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key, u)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}
