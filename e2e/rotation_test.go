package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/netns"
	"github.com/skeinmesh/skein/internal/pki"
)

// TestAnchorRotationUnderLoad rotates the trust anchor with `skein identity
// rotate` (bundle, issue, drop) while a meshed gRPC client calls at 50 rps,
// with certificates of the default 24 h life, so that nothing but the
// trust-bundle stream makes proxies trust the new anchor and renew. After
// the issue step a server whose certificate chains to the new anchor only
// joins the service: the client's proxy must open a new connection to it.
// No call may fail; at the end every proxy trusts the new anchor alone and
// refuses a certificate of the old chain, which it took before the drop.
func TestAnchorRotationUnderLoad(t *testing.T) {
	cp := newControlPlane(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	proxies := []*netns.Host{cp.client, cp.servers[0], cp.servers[1], cp.servers[2]}

	// The old chain, to present a certificate of it at the end.
	oldDir := filepath.Join(cp.dir, "old-identity")
	if err := os.MkdirAll(oldDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "tls.crt", "tls.key"} {
		writeFile(t, filepath.Join(oldDir, f), mustRead(t, filepath.Join(cp.identityDir, f)))
	}
	oldAnchor := fileFingerprints(t, filepath.Join(oldDir, "ca.crt"))[0]

	stop := make(chan struct{})
	load, wg := runSteadyLoad(t, cp.client, fmt.Sprintf("%s:%d", cp.vip, cpPortGRPC), 50, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}()
	time.Sleep(3 * time.Second)

	rotate := func(step string, extra ...string) {
		t.Helper()
		args := append([]string{"identity", "rotate", step, "--dir", cp.identityDir}, extra...)
		if step != "bundle" { // the steps that check the proxies first
			args = append(args, "--api", "unix:"+cp.apiSocket())
		}
		out, err := skein(ctx, args...)
		if err != nil {
			t.Fatalf("skein identity rotate %s: %v\n%s", step, err, out)
		}
		t.Logf("skein identity rotate %s:\n%s", step, out)
	}
	// waitProxies is the check between steps: every proxy's /identity.
	waitProxies := func(what string, ok func(certInfo) bool) {
		t.Helper()
		start := time.Now()
		if !waitFor(45*time.Second, func() bool {
			for _, h := range proxies {
				if !ok(proxyCert(t, h)) {
					return false
				}
			}
			return true
		}) {
			for _, h := range proxies {
				t.Logf("%s: %+v", h.Name, proxyCert(t, h))
			}
			t.Fatalf("not every proxy %s within 45 s", what)
		}
		t.Logf("every proxy %s after %v", what, time.Since(start).Round(time.Millisecond))
	}
	newCert, newKey := filepath.Join(cp.dir, "new-anchor.crt"), filepath.Join(cp.dir, "new-anchor.key")

	// 1. Bundle: every proxy trusts the old and the new anchor.
	rotate("bundle", "--new-anchor-cert", newCert, "--new-anchor-key", newKey)
	newAnchor := fileFingerprints(t, newCert)[0]
	waitProxies("trusts the old and the new anchor", func(ci certInfo) bool {
		return slices.Contains(ci.TrustAnchors, oldAnchor) && slices.Contains(ci.TrustAnchors, newAnchor)
	})
	// The controller's count, which the next step checks, sees them all.
	if !waitFor(10*time.Second, func() bool {
		out, err := skein(ctx, "identity", "rotate", "status", "--dir", cp.identityDir, "--api", "unix:"+cp.apiSocket(), "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var st rotationStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status -o json: %v\n%s", err, out)
		}
		p := st.Proxies
		return p.Proxies == len(proxies) && p.Unreported == 0 && len(p.Anchors) == 2 &&
			p.Anchors[0].Trusting == len(proxies) && p.Anchors[1].Fingerprint == newAnchor && p.Anchors[1].Trusting == len(proxies)
	}) {
		t.Fatal("the controller never counted every proxy trusting both anchors")
	}

	// 2. Issue: every proxy renews under the new issuer.
	rotate("issue", "--new-anchor-cert", newCert, "--new-anchor-key", newKey)
	// Dropping now would cut off proxies that have not renewed yet (each
	// waits a random part of 10 s): the controller's count says so.
	if out, err := skein(ctx, "identity", "rotate", "drop", "--dir", cp.identityDir, "--api", "unix:"+cp.apiSocket()); err == nil ||
		!strings.Contains(out+err.Error(), "proxies hold a certificate that chains to the issuer's anchor") {
		t.Fatalf("drop right after issue: %v\n%s; want a refusal naming the proxies still to renew", err, out)
	} else {
		t.Logf("drop right after issue refused: %v", err)
	}
	newIssuer := issuerKeyID(t, filepath.Join(cp.identityDir, "tls.crt"))
	waitProxies("holds a certificate of the new issuer", func(ci certInfo) bool { return ci.IssuerKeyID == newIssuer })
	// A server of the new chain only joins: a new connection from the
	// client's proxy, which must trust the new anchor for it.
	if err := cp.setInService(cp.servers[2], true); err != nil {
		t.Fatal(err)
	}
	if !waitFor(30*time.Second, func() bool { _, ok := load.lastAnswerFrom(cp.servers[2].Name); return ok }) {
		t.Errorf("%s, of the new chain, never answered", cp.servers[2].Name)
	}
	oldLeaf := oldChainLeaf(t, oldDir)
	answer, err := meshRequest(cp.plain, fmt.Sprintf("%s:%d", cp.servers[0].IP, cpPortHTTP), oldLeaf)
	checkRefusal(t, "before the drop, the", answer, err, "", cp.servers[0].Name)

	// 3. Drop: every proxy trusts the new anchor alone.
	rotate("drop")
	waitProxies("trusts the new anchor alone", func(ci certInfo) bool {
		return slices.Equal(ci.TrustAnchors, []string{newAnchor})
	})
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	answer, err = meshRequest(cp.plain, fmt.Sprintf("%s:%d", cp.servers[0].IP, cpPortHTTP), oldLeaf)
	checkRefusal(t, "after the drop, the", answer, err, "remote error: tls: bad certificate", cp.servers[0].Name)
	newLeaf := oldChainLeaf(t, cp.identityDir)
	answer, err = meshRequest(cp.plain, fmt.Sprintf("%s:%d", cp.servers[0].IP, cpPortHTTP), newLeaf)
	checkRefusal(t, "after the drop, with a new-chain certificate, the", answer, err, "", cp.servers[0].Name)

	if f := load.failed(); len(f) > 0 {
		t.Fatalf("%d of %d calls failed during the rotation; first: %v", len(f), load.calls.Load(), f[0])
	}
	t.Logf("%d calls through the rotation, none failed", load.calls.Load())
}

// oldChainLeaf is a client certificate issued by the issuer in dir, as a
// TLS config that presents it on the mesh's ALPN.
func oldChainLeaf(t *testing.T, dir string) *tls.Config {
	t.Helper()
	key, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates:       []tls.Certificate{identitytest.IssueLeaf(t, dir, spiffeid.RequireFromString(clientID), key)},
		NextProtos:         []string{"skein/http"},
		InsecureSkipVerify: true, // this test is about the server's checks
		MinVersion:         tls.VersionTLS13,
	}
}

func fileFingerprints(t *testing.T, path string) []string {
	t.Helper()
	certs, err := pki.ParseCertificates([]byte(mustRead(t, path)))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = pki.Fingerprint(c)
	}
	return out
}

// issuerKeyID is the subject key ID of the issuer in path, as a proxy's
// /identity names its certificate's issuer.
func issuerKeyID(t *testing.T, path string) string {
	t.Helper()
	certs, err := pki.ParseCertificates([]byte(mustRead(t, path)))
	if err != nil {
		t.Fatal(err)
	}
	var issuer *x509.Certificate = certs[0]
	return hex.EncodeToString(issuer.SubjectKeyId)
}
