package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
)

func TestServingCertificateVerifiesForAPIServerNames(t *testing.T) {
	ca, err := newCertAuthority()
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.issueServing("kube-apiserver",
		[]string{"localhost", "kubernetes.default.svc"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(serving.certPEM, serving.keyPEM)
	if err != nil {
		t.Fatalf("serving key pair: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	for _, tt := range []struct {
		name   string
		wantOK bool
	}{
		{"localhost", true},
		{"kubernetes.default.svc", true},
		{"127.0.0.1", true},
		{"example.com", false},
	} {
		_, err := pair.Leaf.Verify(x509.VerifyOptions{
			DNSName:   tt.name,
			Roots:     roots,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if (err == nil) != tt.wantOK {
			t.Errorf("verify for %s: err = %v, want ok = %v", tt.name, err, tt.wantOK)
		}
	}
}

func TestClientCertificateCarriesUserAndGroups(t *testing.T) {
	ca, err := newCertAuthority()
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.issueClient("skein-test-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(client.certPEM, client.keyPEM)
	if err != nil {
		t.Fatalf("client key pair: %v", err)
	}
	leaf := pair.Leaf
	if leaf.Subject.CommonName != "skein-test-admin" || len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != "system:masters" {
		t.Errorf("subject = %v, want CN=skein-test-admin O=system:masters", leaf.Subject)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not chain to the CA: %v", err)
	}
}
