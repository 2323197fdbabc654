package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	controlleridentity "github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/pki"
)

// rotationStatus is what `skein identity rotate status -o json` says of
// the step and the proxies (--dir and --kubernetes alike).
type rotationStatus struct {
	Step    string `json:"step"`
	Proxies struct {
		Proxies    int `json:"proxies"`
		Unreported int `json:"unreported"`
		Anchors    []struct {
			Fingerprint  string `json:"fingerprint"`
			Trusting     int    `json:"trusting"`
			Certificates int    `json:"certificates"`
		} `json:"anchors"`
	} `json:"proxies"`
}

// every says whether all proxies (at least one, all reported) count for
// the anchor fp in what.
func (s rotationStatus) every(fp string, what func(trusting, certificates int) int) bool {
	p := s.Proxies
	if p.Proxies == 0 || p.Unreported > 0 {
		return false
	}
	for _, a := range p.Anchors {
		if a.Fingerprint == fp {
			return what(a.Trusting, a.Certificates) == p.Proxies
		}
	}
	return false
}

// testAnchorRotation rotates the installed mesh's anchor with `skein
// identity rotate --kubernetes` (bundle, issue, drop) while the meshed
// gRPC client calls at 50 a second: no pod is recreated, certificates keep
// their 24 h life, and no call may fail. Between the steps the CLI's own
// status (every controller replica's count, added up) must show every
// proxy ready for the next; at the end every proxy trusts the new anchor
// alone, and a greeter's proxy refuses a client certificate of the old
// chain, which it took before.
func (k *kube) testAnchorRotation(t *testing.T, client corev1.Pod) {
	dir := readableDir(t)
	// The old chain, to present a certificate of it before and after.
	oldDir := secretIssuer(t, k)
	oldLeaf := kubeLeaf(t, oldDir)
	d, err := k.c.Client.AppsV1().Deployments(shopNamespace).Get(t.Context(), "greeter", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	greeter := k.waitForReadyPods(shopNamespace, "app=greeter", int(*d.Spec.Replicas))[0]
	// The greeter's own port: the pod's rules hand it to the proxy's
	// inbound listener, which sees where it was going.
	var greeterProxy string
	for _, c := range greeter.Spec.Containers {
		if c.Name == "greeter" {
			greeterProxy = net.JoinHostPort(greeter.Status.PodIP, strconv.Itoa(int(c.Ports[0].ContainerPort)))
		}
	}
	presentLeaf := func(cfg *tls.Config) error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		tc, err := meshHandshake(ctx, k.c.Host, greeterProxy, cfg)
		if err == nil {
			tc.Close()
		}
		return err
	}
	if err := presentLeaf(oldLeaf); err != nil {
		t.Fatalf("before the rotation, %s's proxy refused a certificate of the mesh's chain: %v", greeter.Name, err)
	}

	start := k.clientReport(client)
	began := time.Now()
	newCert, newKey := filepath.Join(dir, "new-anchor.crt"), filepath.Join(dir, "new-anchor.key")
	rotate := func(step string, extra ...string) {
		t.Helper()
		t.Logf("skein identity rotate %s:\n%s", step, k.skein("", append([]string{"identity", "rotate", step, "--kubernetes"}, extra...)...))
	}
	status := func() (rotationStatus, error) {
		var st rotationStatus
		out, err := k.trySkein("", "identity", "rotate", "status", "--kubernetes", "-o", "json")
		if err != nil {
			return st, err
		}
		return st, json.Unmarshal([]byte(out), &st)
	}
	waitStatus := func(what string, ok func(rotationStatus) bool) {
		t.Helper()
		since := time.Now()
		k.waitFor("every proxy to "+what, 60*time.Second, func() error {
			st, err := status()
			if err != nil {
				return err
			}
			if !ok(st) {
				return fmt.Errorf("not yet: %+v", st)
			}
			return nil
		})
		t.Logf("every proxy %s after %v", what, time.Since(since).Round(time.Millisecond))
	}

	// 1. Bundle: the anchor is made here, its key never enters the cluster.
	rotate("bundle", "--new-anchor-cert", newCert, "--new-anchor-key", newKey)
	newAnchor := fileFingerprints(t, newCert)[0]
	oldAnchor := fileFingerprints(t, filepath.Join(oldDir, controlleridentity.TrustAnchorFile))[0]
	waitStatus("trust both anchors", func(st rotationStatus) bool {
		return st.Step == "bundled" && st.every(oldAnchor, trusting) && st.every(newAnchor, trusting)
	})
	k.requireConfigMapAnchors(oldAnchor, newAnchor)
	if out, _ := k.check("--proxy"); !strings.Contains(out, "anchor rotation under way (bundled)") {
		t.Errorf("skein check --proxy does not report the rotation's step after the bundle:\n%s", out)
	}

	// 2. Issue: every proxy renews under the new issuer within 10 s.
	rotate("issue", "--new-anchor-cert", newCert, "--new-anchor-key", newKey)
	waitStatus("hold a certificate of the new chain", func(st rotationStatus) bool {
		return st.Step == "issued" && st.every(newAnchor, certificates)
	})
	if err := presentLeaf(oldLeaf); err != nil {
		t.Errorf("before the drop, %s's proxy refused a certificate of the old chain: %v", greeter.Name, err)
	}

	// 3. Drop: the new anchor alone.
	rotate("drop")
	waitStatus("trust the new anchor alone", func(st rotationStatus) bool {
		return st.Step == "single" && len(st.Proxies.Anchors) == 1 && st.every(newAnchor, trusting)
	})
	k.requireConfigMapAnchors(newAnchor)
	time.Sleep(3 * time.Second) // calls on the new chain alone

	if err := presentLeaf(oldLeaf); err == nil || !strings.HasSuffix(err.Error(), "remote error: tls: bad certificate") {
		t.Errorf("after the drop, %s's proxy answered a certificate of the old chain with %v, want tls: bad certificate", greeter.Name, err)
	}
	if err := presentLeaf(kubeLeaf(t, secretIssuer(t, k))); err != nil {
		t.Errorf("after the drop, %s's proxy refused a certificate of the new chain: %v", greeter.Name, err)
	}

	end := k.clientReport(client)
	calls := 0
	for name, n := range end.Calls {
		calls += n - start.Calls[name]
	}
	elapsed := time.Since(began)
	t.Logf("anchor rotation: %d calls in %v (%.0f/s), %d failed", calls, elapsed.Round(time.Millisecond), float64(calls)/elapsed.Seconds(), end.Failures-start.Failures)
	if failed := end.Failures - start.Failures; failed > 0 {
		t.Errorf("%d calls failed during the anchor rotation: %v", failed, end.since(start).Failed)
	}
	if want := int(elapsed.Seconds() * 50 / 2); calls < want {
		t.Errorf("%d calls in %v, want at least %d (half the client's 50/s)", calls, elapsed, want)
	}
	// skein check knows the pods were injected before the rotation, and
	// that this is not a failure: their proxies run on the new anchor.
	out, err := k.check("--proxy")
	if err != nil {
		t.Errorf("skein check --proxy after the rotation: %v\n%s", err, out)
	}
	if !strings.Contains(out, "[warn] meshed pods were injected with one of the issuer's anchors") ||
		!strings.Contains(out, "[ok] running proxies trust the issuer's anchors and hold its certificates") {
		t.Errorf("skein check --proxy does not say the pods were injected before the rotation, and every proxy on the new anchor:\n%s", out)
	}
}

func trusting(t, _ int) int     { return t }
func certificates(_, c int) int { return c }

// requireConfigMapAnchors checks that the ConfigMap the CLI reads offline
// holds the anchors of the issuer Secret, in order.
func (k *kube) requireConfigMapAnchors(want ...string) {
	k.t.Helper()
	cm, err := k.c.Client.CoreV1().ConfigMaps(controlNamespace).Get(k.t.Context(), install.TrustAnchorsConfigMapName, metav1.GetOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	certs, err := pki.ParseCertificates([]byte(cm.Data[controlleridentity.TrustAnchorFile]))
	if err != nil {
		k.t.Fatal(err)
	}
	var got []string
	for _, c := range certs {
		got = append(got, pki.Fingerprint(c))
	}
	if !slices.Equal(got, want) {
		k.t.Errorf("configmap %s holds anchors %v, want %v", install.TrustAnchorsConfigMapName, got, want)
	}
}

// secretIssuer writes the issuer Secret's material (ca.crt, tls.crt,
// tls.key) into a new directory.
func secretIssuer(t *testing.T, k *kube) string {
	t.Helper()
	secret, err := k.c.Client.CoreV1().Secrets(controlNamespace).Get(t.Context(), install.IssuerSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{controlleridentity.TrustAnchorFile, controlleridentity.IssuerCertFile, controlleridentity.IssuerKeyFile} {
		writeFile(t, filepath.Join(dir, f), string(secret.Data[f]))
	}
	return dir
}

// kubeLeaf is a client certificate for a shop workload issued by the
// issuer in dir, presented on the mesh's ALPN.
func kubeLeaf(t *testing.T, dir string) *tls.Config {
	t.Helper()
	key, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromString("spiffe://" + kubeTrustDomain + "/ns/" + shopNamespace + "/sa/rotation-witness")
	return &tls.Config{
		Certificates:       []tls.Certificate{identitytest.IssueLeaf(t, dir, id, key)},
		NextProtos:         []string{"skein/http"},
		InsecureSkipVerify: true, // this test is about the proxy's checks
		MinVersion:         tls.VersionTLS13,
	}
}
