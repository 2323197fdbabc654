package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	controlleridentity "github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/install"
	"github.com/skeinmesh/skein/internal/pki"
	"github.com/skeinmesh/skein/internal/testenv"
	"github.com/skeinmesh/skein/internal/testenv/cluster"
)

// certManagerIssuer is docs/install.md's cert-manager setup in the test's
// namespace: a CA Issuer over the root the test made, and a Certificate
// for Skein's issuer Secret under it. Only the duration is shorter.
const certManagerIssuer = `
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: skein-trust-anchor, namespace: ` + controlNamespace + `}
spec:
  ca: {secretName: skein-trust-anchor}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: skein-identity-issuer, namespace: ` + controlNamespace + `}
spec:
  secretName: skein-identity-issuer
  isCA: true
  commonName: skein issuer cluster.local
  uris: ["spiffe://cluster.local"]
  duration: 1h
  renewBefore: 20m
  privateKey: {algorithm: ECDSA, size: 256, rotationPolicy: Always}
  usages: [cert sign, crl sign, digital signature]
  issuerRef: {name: skein-trust-anchor, kind: Issuer}
`

// TestKubernetesCertManager runs cert-manager's controller (built from the
// module proxy) against the test cluster. Skein is installed with
// --identity external and a root the test made; cert-manager issues
// Skein's issuer Secret from a CA Issuer over that root. With a meshed
// gRPC client calling at 50 rps, the Certificate is renewed the way
// `cmctl renew` does it (the Issuing condition): the Secret gets a new
// issuer with a new key, both controller replicas load it without a
// restart, a greeter started afterwards (its proxy certified by the new
// issuer) answers the client like the others, the client sees no failed
// call, and a workload certificate issued afterwards is signed by the new
// issuer and chains to the root.
func TestKubernetesCertManager(t *testing.T) {
	requireRoot(t)
	network := testenv.NewNetwork(t)
	c := cluster.Start(t, network)
	cm := c.StartCertManager(t)
	k := &kube{t: t, c: c, podDir: t.TempDir(), tester: testenv.AddHost(t, network, "tester")}
	k.startKubelet(network)
	t.Cleanup(k.dumpLogsOnFailure)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cert-manager's log:\n%s", cm.LogTail(60))
		}
	})
	cmPid := cm.Pid()

	root, rootKey := newRootCA(t)
	rootFile := filepath.Join(readableDir(t), "root.crt")
	if err := os.WriteFile(rootFile, root.certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	out := k.run(nil, filepath.Join(binDir, "skein"), "install", "--namespace", controlNamespace, "--trust-domain", kubeTrustDomain,
		"--replicas", "2", "--identity", "external", "--trust-anchor", rootFile)
	k.kubectl([]byte(out), "apply", "-f", "-")
	// The root's Secret, as the user makes it; cert-manager signs with it.
	_, err := c.Client.CoreV1().Secrets(controlNamespace).Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "skein-trust-anchor", Namespace: controlNamespace},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": root.certPEM, "tls.key": rootKey},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	k.kubectl([]byte(certManagerIssuer), "apply", "-f", "-")
	k.kubectl(nil, "-n", controlNamespace, "wait", "--for=condition=Ready", "--timeout=90s", "certificate/skein-identity-issuer")
	first := k.issuerCertificate()
	t.Logf("cert-manager %s issued Skein's issuer (serial %s) %v after the Certificate was applied",
		cm.Version, first.SerialNumber.Text(16), time.Since(start).Round(time.Millisecond))
	if err := first.CheckSignatureFrom(root.cert); err != nil {
		t.Fatalf("the issuer cert-manager made is not signed by the root: %v", err)
	}
	k.waitFor("skein check to pass", 2*time.Minute, func() error {
		_, err := k.check()
		return err
	})
	controllers := k.waitForReadyPods(controlNamespace, "app.kubernetes.io/name=skein-controller", 2)
	for _, p := range controllers {
		k.waitFor("controller "+p.Name+" to load the first issuer", 30*time.Second, func() error {
			return k.loadedIssuer(p, first)
		})
	}

	k.kubectl([]byte(shopManifests), "apply", "-f", "-")
	k.waitForReadyPods(shopNamespace, "app=greeter", 3)
	client := k.waitForReadyPods(shopNamespace, "app=client", 1)[0]
	k.waitFor("the client to report calls", time.Minute, func() error {
		if r := k.clientReport(client); r.reports < 2 {
			return fmt.Errorf("%d reports", r.reports)
		}
		return nil
	})
	// The renewal is measured from a client that calls without failing:
	// failures of its start (a proxy still waiting for discovery) are not
	// the renewal's.
	k.waitFor("the client's calls to succeed", time.Minute, func() error {
		if w := k.callsOver(client, 2*time.Second); len(w.Calls) == 0 || w.Failures > 0 {
			return fmt.Errorf("calls %v, %d failed (%v)", w.Calls, w.Failures, w.Failed)
		}
		return nil
	})
	before := k.clientReport(client)
	if before.Failures > 0 {
		t.Logf("the client's start: %d calls failed before its calls succeeded (%v)", before.Failures, before.Failed)
	}

	// cmctl renew sets the Issuing condition on the Certificate's status;
	// cert-manager then issues it again (a new key: rotationPolicy Always).
	renewed := time.Now()
	k.kubectl([]byte(`[{"op": "add", "path": "/status/conditions/-", "value": {"type": "Issuing", "status": "True",
		"reason": "ManuallyTriggered", "message": "Certificate re-issuance manually triggered",
		"lastTransitionTime": "`+time.Now().UTC().Format(time.RFC3339)+`"}}]`),
		"-n", controlNamespace, "patch", "certificate", "skein-identity-issuer", "--subresource=status", "--type=json", "--patch-file=/dev/stdin")
	var second *x509.Certificate
	k.waitFor("cert-manager to renew Skein's issuer", 90*time.Second, func() error {
		second = k.issuerCertificate()
		if second.Equal(first) {
			return fmt.Errorf("still serial %s", first.SerialNumber.Text(16))
		}
		return nil
	})
	t.Logf("cert-manager renewed the issuer (serial %s) %v after the Issuing condition was set",
		second.SerialNumber.Text(16), time.Since(renewed).Round(time.Millisecond))
	if bytes.Equal(first.SubjectKeyId, second.SubjectKeyId) {
		t.Error("the renewed issuer has the old key")
	}
	for _, p := range controllers {
		k.waitFor("controller "+p.Name+" to load the renewed issuer", 30*time.Second, func() error {
			return k.loadedIssuer(p, second)
		})
	}
	t.Logf("both controllers loaded the renewed issuer %v after the Issuing condition was set", time.Since(renewed).Round(time.Millisecond))

	// A greeter started now gets its proxy's certificate from the renewed
	// issuer; the client, whose certificate the old issuer signed, must
	// reach it as well as the others: both chains meet under one anchor.
	k.kubectl(nil, "-n", shopNamespace, "scale", "deployment/greeter", "--replicas=4")
	greeters := k.waitForReadyPods(shopNamespace, "app=greeter", 4)
	k.waitFor("every greeter, the new one too, to answer the client", 30*time.Second, func() error {
		calls := k.clientReport(client).Calls
		for _, name := range podNames(greeters) {
			if calls[name] <= before.Calls[name] {
				return fmt.Errorf("%s has answered no call since the renewal (calls %v)", name, calls)
			}
		}
		return nil
	})
	time.Sleep(5 * time.Second)
	after := k.clientReport(client)
	loaded := time.Since(renewed)

	t.Run("NoCallFailed", func(t *testing.T) {
		window := after.since(before)
		calls := 0
		for _, n := range window.Calls {
			calls += n
		}
		// The client aims at 50 a second; a floor of 20 a second over the
		// window shows it kept calling on two loaded cores.
		floor := int(20 * loaded.Seconds())
		if window.Failures != 0 || calls < floor {
			t.Errorf("while cert-manager renewed the issuer the client made %d calls, %d failed (%v); want 0 failed of at least %d",
				calls, window.Failures, window.Failed, floor)
		}
		t.Logf("%d calls over %v, %d failed, while the issuer was renewed and a greeter with a certificate from the new issuer joined",
			calls, loaded.Round(time.Millisecond), window.Failures)
	})

	t.Run("ControllersWereNotRestarted", func(t *testing.T) {
		k := k.with(t)
		now := k.waitForReadyPods(controlNamespace, "app.kubernetes.io/name=skein-controller", 2)
		for i, p := range now {
			if p.UID != controllers[i].UID {
				t.Errorf("controller pod %s is new (uid %s, was %s %s)", p.Name, p.UID, controllers[i].Name, controllers[i].UID)
				continue
			}
			for _, s := range p.Status.ContainerStatuses {
				if s.State.Running == nil || s.RestartCount != 0 {
					t.Errorf("controller pod %s container %s: state %+v, restarts %d", p.Name, s.Name, s.State, s.RestartCount)
				}
			}
		}
		if err := cm.Running(); err != nil || cm.Pid() != cmPid {
			t.Errorf("cert-manager's controller: %v, pid %d (was %d)", err, cm.Pid(), cmPid)
		}
	})

	t.Run("NewWorkloadCertificatesChainToTheRenewedIssuer", func(t *testing.T) {
		k := k.with(t)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		anchors, addr, controller := k.identityService(ctx, t)
		if !bytes.Equal(anchors, root.certPEM) {
			t.Errorf("the issuer Secret's ca.crt is not the root the test made:\n%s", anchors)
		}
		pair, err := certifiedPair(ctx, t, k.tester, addr, anchors, controller, clientSPIFFE, k.token(ctx, shopNamespace, "client"))
		if err != nil {
			t.Fatalf("certifying a workload key after the renewal: %v", err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(leaf.AuthorityKeyId, second.SubjectKeyId) {
			t.Errorf("the workload certificate's authority key id %x is not the renewed issuer's %x (the old one's is %x)",
				leaf.AuthorityKeyId, second.SubjectKeyId, first.SubjectKeyId)
		}
		if err := leaf.CheckSignatureFrom(second); err != nil {
			t.Errorf("the workload certificate is not signed by the renewed issuer: %v", err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(root.cert)
		intermediates := x509.NewCertPool()
		intermediates.AddCert(second)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("the workload certificate does not chain to the root through the renewed issuer: %v", err)
		}
	})
}

// testRoot is the root CA the test makes, the mesh's trust anchor.
type testRoot struct {
	cert    *x509.Certificate
	certPEM []byte
}

func newRootCA(t *testing.T) (testRoot, []byte) {
	t.Helper()
	key, err := pki.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.NewTrustAnchor(kubeTrustDomain, key, 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testRoot{cert: cert, certPEM: pki.EncodeCertificates(cert)}, keyPEM
}

// issuerCertificate is the issuer in Skein's issuer Secret now.
func (k *kube) issuerCertificate() *x509.Certificate {
	k.t.Helper()
	secret, err := k.c.Client.CoreV1().Secrets(controlNamespace).Get(k.t.Context(), install.IssuerSecretName, metav1.GetOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	certs, err := pki.ParseCertificates(secret.Data[controlleridentity.IssuerCertFile])
	if err != nil || len(certs) == 0 {
		k.t.Fatalf("the issuer Secret's tls.crt: %v (%d certificates)", err, len(certs))
	}
	return certs[0]
}

// loadedIssuer reports an error unless the controller pod's log says it
// loaded issuer.
func (k *kube) loadedIssuer(pod corev1.Pod, issuer *x509.Certificate) error {
	data, err := os.ReadFile(filepath.Join(k.podDir, string(pod.UID), "controller.log"))
	if err != nil {
		return err
	}
	want := issuer.SerialNumber.Text(16)
	for line := range strings.Lines(string(data)) {
		var entry struct{ Msg, Serial string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "issuer loaded" && entry.Serial == want {
			return nil
		}
	}
	return fmt.Errorf("no \"issuer loaded\" with serial %s in its log", want)
}
