package identity_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	"github.com/skeinmesh/skein/internal/meshid"
	"github.com/skeinmesh/skein/internal/pki"
	proxyidentity "github.com/skeinmesh/skein/internal/proxy/identity"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

func TestProxyGetsCertificateForItsIdentity(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	id := ctrl.WorkloadID("demo", "web")
	local := ctrl.RunLocal(t, id)

	leaf, ok := local.Certificate()
	if !ok {
		t.Fatal("no certificate after Ready")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() {
		t.Errorf("URI SANs = %v, want only %s", leaf.URIs, id)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("unexpected SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("IsCA=%v KeyUsage=%v, want leaf with digitalSignature only", leaf.IsCA, leaf.KeyUsage)
	}
	wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if !reflect.DeepEqual(leaf.ExtKeyUsage, wantEKU) {
		t.Errorf("ExtKeyUsage = %v, want %v", leaf.ExtKeyUsage, wantEKU)
	}
	if life := time.Until(leaf.NotAfter); life > identity.DefaultLifetime || life < identity.DefaultLifetime-time.Minute {
		t.Errorf("certificate valid for %s more, want about %s", life, identity.DefaultLifetime)
	}
	if leaf.SerialNumber.BitLen() < 64 {
		t.Errorf("serial %x looks too short to be random 128-bit", leaf.SerialNumber)
	}

	// A Certify response's chain verifies to the anchor alone.
	bundle := x509bundle.FromX509Authorities(ctrl.TrustDomain, []*x509.Certificate{ctrl.Anchor})
	resp := certify(t, ctrl, id, mintToken(t, ctrl, id), newCSR(t, id))
	chain := parseChain(t, resp)
	for _, c := range chain[1:] {
		if c.Equal(ctrl.Anchor) {
			t.Error("response includes the trust anchor among the intermediates")
		}
	}
	gotID, _, err := x509svid.Verify(chain, bundle)
	if err != nil || gotID != id {
		t.Fatalf("verify chain: id %s, err %v", gotID, err)
	}
	if !resp.GetValidUntil().AsTime().Equal(chain[0].NotAfter) {
		t.Errorf("valid_until %s != NotAfter %s", resp.GetValidUntil().AsTime(), chain[0].NotAfter)
	}
}

// The private key must not be reachable through Local's exported API.
func TestLocalExposesNoPrivateKey(t *testing.T) {
	typ := reflect.TypeOf(&proxyidentity.Local{})
	signer := reflect.TypeOf((*interface{ Public() any })(nil)).Elem()
	for i := range typ.NumMethod() {
		m := typ.Method(i)
		for j := range m.Type.NumOut() {
			out := m.Type.Out(j)
			if out.Implements(signer) || out == reflect.TypeOf(&ecdsa.PrivateKey{}) || out == reflect.TypeOf(&x509svid.SVID{}) {
				t.Errorf("Local.%s returns %s", m.Name, out)
			}
		}
	}
	for i := range typ.Elem().NumField() {
		if f := typ.Elem().Field(i); f.IsExported() {
			t.Errorf("Local has exported field %s", f.Name)
		}
	}
}

func TestCertifyRefuses(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{CertifyBurst: 1000})
	id := ctrl.WorkloadID("demo", "web")
	other := ctrl.WorkloadID("demo", "api")
	now := time.Now()
	claims := func(edit func(*jwt.Claims)) jwt.Claims {
		c := jwt.Claims{
			Issuer: identity.JoinTokenIssuer, Subject: id.String(), Audience: jwt.Audience{identity.Audience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour)),
		}
		edit(&c)
		return c
	}
	good := mintToken(t, ctrl, id)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384CSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, p384)
	if err != nil {
		t.Fatal(err)
	}
	tamperedCSR := newCSR(t, id)
	tamperedCSR[len(tamperedCSR)-5] ^= 0xff

	tests := []struct {
		name     string
		identity string
		token    []byte
		csr      []byte
		code     codes.Code
		reason   string
	}{
		{"wrong audience", id.String(), signClaims(t, ctrl.JoinKey, claims(func(c *jwt.Claims) { c.Audience = jwt.Audience{"x"} })), nil,
			codes.Unauthenticated, "token audience is [x], want identity.skein.io"},
		{"expired", id.String(), signClaims(t, ctrl.JoinKey, claims(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Hour)) })), nil,
			codes.Unauthenticated, "token expired at"},
		{"not yet valid", id.String(), signClaims(t, ctrl.JoinKey, claims(func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) })), nil,
			codes.Unauthenticated, "not valid before"},
		{"wrong issuer", id.String(), signClaims(t, ctrl.JoinKey, claims(func(c *jwt.Claims) { c.Issuer = "mallory" })), nil,
			codes.Unauthenticated, `token issuer is "mallory"`},
		{"token for another identity", id.String(), mintToken(t, ctrl, other), nil,
			codes.PermissionDenied, "token is for " + other.String() + ", not " + id.String()},
		{"signed by another key", id.String(), signClaims(t, identitytest.NewKey(t), claims(func(*jwt.Claims) {})), nil,
			codes.Unauthenticated, "signature"},
		{"HS256", id.String(), hmacToken(t, "HS256", claims(func(*jwt.Claims) {})), nil,
			codes.Unauthenticated, "unexpected signature algorithm \"HS256\""},
		{"alg none", id.String(), hmacToken(t, "none", claims(func(*jwt.Claims) {})), nil,
			codes.Unauthenticated, "unexpected signature algorithm \"none\""},
		{"no token", id.String(), []byte{}, nil, codes.Unauthenticated, "no token"},
		{"garbage token", id.String(), []byte("not-a-jwt"), nil, codes.Unauthenticated, "join token"},
		{"huge token", id.String(), bytes.Repeat([]byte("a"), identity.MaxTokenSize+1), nil, codes.Unauthenticated,
			"token is 16385 bytes, more than any token this service accepts (16384)"},
		{"RSA CSR", id.String(), good, rsaCSR, codes.InvalidArgument, "want ECDSA P-256"},
		{"P-384 CSR", id.String(), good, p384CSR, codes.InvalidArgument, "want ECDSA P-256"},
		{"tampered CSR", id.String(), good, tamperedCSR, codes.InvalidArgument, "certificate signing request"},
		{"no CSR", id.String(), good, []byte{}, codes.InvalidArgument, "no certificate signing request"},
		{"other trust domain", "spiffe://evil.example/ns/demo/sa/web", good, nil, codes.InvalidArgument, "not in trust domain cluster.local"},
		{"not a workload path", "spiffe://cluster.local/web", good, nil, codes.InvalidArgument, "path must be /ns/<namespace>/sa/<service-account>"},
		{"not a SPIFFE ID", "https://cluster.local/ns/demo/sa/web", good, nil, codes.InvalidArgument, "not a SPIFFE ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := tt.csr
			if csr == nil {
				csr = newCSR(t, id)
			}
			_, err := ctrl.Client.Certify(context.Background(), &identitypb.CertifyRequest{
				Identity: tt.identity, Token: tt.token, CertificateSigningRequest: csr,
			})
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.reason) {
				t.Errorf("got %s %q, want %s containing %q", st.Code(), st.Message(), tt.code, tt.reason)
			}
		})
	}
}

// One client gets CertifyBurst calls at once, then RESOURCE_EXHAUSTED
// until its bucket refills, good token or not.
func TestCertifyIsRateLimitedPerClient(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{CertifyRate: 0.001, CertifyBurst: 3})
	id := ctrl.WorkloadID("demo", "web")
	for range 2 {
		_, err := ctrl.Client.Certify(context.Background(), &identitypb.CertifyRequest{
			Identity: id.String(), Token: []byte("junk"), CertificateSigningRequest: newCSR(t, id),
		})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("junk token within the burst: %v, want UNAUTHENTICATED", err)
		}
	}
	certify(t, ctrl, id, mintToken(t, ctrl, id), newCSR(t, id))
	_, err := ctrl.Client.Certify(context.Background(), &identitypb.CertifyRequest{
		Identity: id.String(), Token: mintToken(t, ctrl, id), CertificateSigningRequest: newCSR(t, id),
	})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted ||
		st.Message() != "too many certificate requests from this client: at most 0.001 per second (burst 3)" {
		t.Fatalf("fourth call: %v, want RESOURCE_EXHAUSTED naming the limit", err)
	}
}

// The certificate holds only the identity, whatever else the CSR asks for.
func TestCertifyIgnoresExtraCSRNames(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	id := ctrl.WorkloadID("demo", "web")
	key := identitytest.NewKey(t)
	evil, _ := url.Parse("spiffe://cluster.local/ns/skein/sa/skein-controller")
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		DNSNames: []string{"example.com"}, URIs: []*url.URL{evil},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseChain(t, certify(t, ctrl, id, mintToken(t, ctrl, id), csr))[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() || len(leaf.DNSNames) != 0 {
		t.Errorf("leaf names: URIs %v DNS %v, want only %s", leaf.URIs, leaf.DNSNames, id)
	}
}

func TestCertificateNeverOutlivesIssuer(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{Lifetime: 1000 * time.Hour})
	id := ctrl.WorkloadID("demo", "web")
	leaf := parseChain(t, certify(t, ctrl, id, mintToken(t, ctrl, id), newCSR(t, id)))[0]
	issuer := ctrl.Source.Issuer().Certificate()
	if leaf.NotAfter.After(issuer.NotAfter) {
		t.Errorf("leaf NotAfter %s after issuer NotAfter %s", leaf.NotAfter, issuer.NotAfter)
	}
}

func TestIssuedCertificateIsBackdatedByTheSkewAllowance(t *testing.T) {
	tests := []struct {
		name string
		skew time.Duration
		want time.Duration
	}{
		{"default", 0, time.Minute},
		{"configured", 5 * time.Minute, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctrl := identitytest.Start(t, identitytest.Options{ClockSkew: tt.skew})
			id := ctrl.WorkloadID("demo", "web")
			before := time.Now().Truncate(time.Second) // certificates count whole seconds
			leaf := parseChain(t, certify(t, ctrl, id, mintToken(t, ctrl, id), newCSR(t, id)))[0]
			after := time.Now()
			if nb := leaf.NotBefore; nb.Before(before.Add(-tt.want)) || nb.After(after.Add(-tt.want)) {
				t.Errorf("NotBefore %s, want %s before the Certify call (%s..%s)", nb, tt.want, before, after)
			}
		})
	}
}

func TestServiceRefusesBadClockSkew(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	for _, skew := range []time.Duration{-time.Second, identity.MaxClockSkew + time.Second} {
		_, err := identity.NewService(identity.Config{
			TrustDomain: ctrl.TrustDomain, Issuers: ctrl.Source,
			Tokens:    identity.NewJoinTokens(&ctrl.JoinKey.PublicKey, identity.Audience, nil),
			ClockSkew: skew,
		})
		if err == nil || !strings.Contains(err.Error(), "ClockSkew") {
			t.Errorf("ClockSkew %s: NewService = %v, want an error naming ClockSkew", skew, err)
		}
	}
}

func certify(t *testing.T, ctrl *identitytest.Controller, id spiffeid.ID, token, csr []byte) *identitypb.CertifyResponse {
	t.Helper()
	resp, err := ctrl.Client.Certify(context.Background(), &identitypb.CertifyRequest{
		Identity: id.String(), Token: token, CertificateSigningRequest: csr,
	})
	if err != nil {
		t.Fatalf("Certify: %v", err)
	}
	return resp
}

func parseChain(t *testing.T, resp *identitypb.CertifyResponse) []*x509.Certificate {
	t.Helper()
	var chain []*x509.Certificate
	for _, der := range append([][]byte{resp.GetLeafCertificate()}, resp.GetIntermediateCertificates()...) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, cert)
	}
	return chain
}

func newCSR(t *testing.T, id spiffeid.ID) []byte {
	t.Helper()
	csr, err := pki.NewCSR(identitytest.NewKey(t), id.URL())
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func mintToken(t *testing.T, ctrl *identitytest.Controller, id spiffeid.ID) []byte {
	t.Helper()
	token, err := identity.MintJoinToken(ctrl.JoinKey, id, identity.Audience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(token)
}

func signClaims(t *testing.T, key *ecdsa.PrivateKey, claims jwt.Claims) []byte {
	t.Helper()
	token, err := identity.SignJoinTokenClaims(key, claims)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(token)
}

// hmacToken builds a JWT with alg HS256 (keyed with nothing a verifier
// should accept) or none (no signature).
func hmacToken(t *testing.T, alg string, claims jwt.Claims) []byte {
	t.Helper()
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signingInput := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	signature := ""
	if alg == "HS256" {
		mac := hmac.New(sha256.New, []byte("guessable"))
		mac.Write([]byte(signingInput))
		signature = enc.EncodeToString(mac.Sum(nil))
	}
	return []byte(signingInput + "." + signature)
}

// acceptAnything is a token check that proves whatever identity it was
// built with, for any token: Certify must still refuse the control plane's.
type acceptAnything spiffeid.ID

func (a acceptAnything) Validate(context.Context, []byte) (spiffeid.ID, error) {
	return spiffeid.ID(a), nil
}

func TestCertifyRefusesControlPlaneIdentitiesWhateverTheToken(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	controller := meshid.Controller(ctrl.TrustDomain)
	for _, id := range []spiffeid.ID{controller, spiffeid.RequireFromPath(ctrl.TrustDomain, "/skein/anything")} {
		want := "identity " + id.String() + " is reserved for the mesh's control plane"
		// A join token signed with the controller's own key for exactly
		// that identity, over gRPC.
		_, err := ctrl.Client.Certify(context.Background(), &identitypb.CertifyRequest{
			Identity: id.String(), Token: mintToken(t, ctrl, id), CertificateSigningRequest: newCSR(t, id),
		})
		if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != want {
			t.Errorf("join token for %s: got %s %q, want PermissionDenied %q", id, st.Code(), st.Message(), want)
		}
		// A token check that vouches for it whatever the token says.
		svc, err := identity.NewService(identity.Config{
			TrustDomain: ctrl.TrustDomain, Issuers: ctrl.Source, Tokens: acceptAnything(id), Log: ctrl.Log,
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.Certify(context.Background(), &identitypb.CertifyRequest{
			Identity: id.String(), Token: []byte("anything"), CertificateSigningRequest: newCSR(t, id),
		})
		if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != want {
			t.Errorf("token vouched for %s: got %s %q, want PermissionDenied %q", id, st.Code(), st.Message(), want)
		}
	}
}

// spiffe://<td>/ns/skein/sa/skein-controller, the controller's identity
// before it moved under /skein/, is a workload like any other: whoever owns
// namespace skein can be certified as it, and a proxy checking for the
// controller refuses a server that presents it.
func TestOldControllerIDIsAWorkloadTheProxyDoesNotTrustAsController(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	old := ctrl.WorkloadID("skein", "skein-controller")
	key := identitytest.NewKey(t)
	csr, err := pki.NewCSR(key, old.URL())
	if err != nil {
		t.Fatal(err)
	}
	chain := parseChain(t, certify(t, ctrl, old, mintToken(t, ctrl, old), csr))
	var raw [][]byte
	for _, c := range chain {
		raw = append(raw, c.Raw)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: raw, PrivateKey: key, Leaf: chain[0]}},
		NextProtos:   []string{"h2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), proxyidentity.ControllerTLS([]*x509.Certificate{ctrl.Anchor}, meshid.Controller(ctrl.TrustDomain)))
	if err == nil {
		conn.Close()
		t.Fatal("a proxy accepted ns/skein/sa/skein-controller as the controller")
	}
	if want := `unexpected ID "` + old.String() + `"`; !strings.Contains(err.Error(), want) {
		t.Fatalf("handshake error %q, want it to say %s", err, want)
	}
}

// TestCertifyCountsAndTimesEveryAnswer: an issued certificate and a
// refusal are each counted and each timed in
// identity_certify_duration_seconds (the control-plane dashboard's Certify
// latency).
func TestCertifyCountsAndTimesEveryAnswer(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	id := ctrl.WorkloadID("demo", "web")
	reg := prometheus.NewRegistry()
	svc, err := identity.NewService(identity.Config{
		TrustDomain: ctrl.TrustDomain, Issuers: ctrl.Source, Tokens: acceptAnything(id), Log: ctrl.Log, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Certify(context.Background(), &identitypb.CertifyRequest{
		Identity: id.String(), Token: []byte("anything"), CertificateSigningRequest: newCSR(t, id),
	}); err != nil {
		t.Fatal(err)
	}
	controller := meshid.Controller(ctrl.TrustDomain)
	if _, err := svc.Certify(context.Background(), &identitypb.CertifyRequest{
		Identity: controller.String(), Token: []byte("anything"), CertificateSigningRequest: newCSR(t, controller),
	}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("certifying the controller's identity: %v, want PermissionDenied", err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetHistogram() != nil:
				got[f.GetName()+" count"] = float64(m.GetHistogram().GetSampleCount())
			case m.GetCounter() != nil:
				got[f.GetName()] += m.GetCounter().GetValue()
			}
		}
	}
	want := map[string]float64{
		"identity_certificates_issued_total":      1,
		"identity_certificates_refused_total":     1,
		"identity_certify_duration_seconds count": 2,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("metrics %v, want %v", got, want)
	}
}
