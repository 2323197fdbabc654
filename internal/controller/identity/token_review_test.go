package identity_test

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
)

const clusterIssuer = "https://kubernetes.default.svc.cluster.local"

// saToken is a service-account token as the API server would sign it: the
// fake API server does not check the signature, the local checks do not
// either.
func saToken(t *testing.T, key *ecdsa.PrivateKey, edit func(*jwt.Claims)) []byte {
	t.Helper()
	now := time.Now()
	claims := jwt.Claims{
		Issuer: clusterIssuer, Subject: "system:serviceaccount:demo:web", Audience: jwt.Audience{identity.Audience},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour)),
	}
	if edit != nil {
		edit(&claims)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return []byte(token)
}

// countingAPI is a fake API server whose TokenReviews answer with answer
// and are counted.
func countingAPI(answer func(token string) (authnv1.TokenReviewStatus, error)) (*fake.Clientset, *atomic.Int64) {
	client := fake.NewClientset()
	var calls atomic.Int64
	client.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		review := action.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		st, err := answer(review.Spec.Token)
		if err != nil {
			return true, nil, err
		}
		return true, &authnv1.TokenReview{Status: st}, nil
	})
	return client, &calls
}

func TestTokenReviews(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	token := saToken(t, identitytest.NewKey(t), nil)
	tests := []struct {
		name      string
		status    authnv1.TokenReviewStatus
		apiErr    error
		want      string // identity, when no error is expected
		wantErr   string
		wantUnavl bool
	}{
		{name: "service account", status: authnv1.TokenReviewStatus{
			Authenticated: true, Audiences: []string{identity.Audience},
			User: authnv1.UserInfo{Username: "system:serviceaccount:demo:web"},
		}, want: "spiffe://cluster.local/ns/demo/sa/web"},
		{name: "not authenticated", status: authnv1.TokenReviewStatus{Error: "token has expired"},
			wantErr: "not authenticated by the Kubernetes API: token has expired"},
		{name: "wrong audience", status: authnv1.TokenReviewStatus{
			Authenticated: true, Audiences: []string{"https://kubernetes.default.svc"},
			User: authnv1.UserInfo{Username: "system:serviceaccount:demo:web"},
		}, wantErr: "token audience is [https://kubernetes.default.svc], want identity.skein.io"},
		{name: "a user, not a service account", status: authnv1.TokenReviewStatus{
			Authenticated: true, Audiences: []string{identity.Audience},
			User: authnv1.UserInfo{Username: "alice"},
		}, wantErr: `token is for user "alice"`},
		{name: "API down", apiErr: errors.New("connection refused"), wantErr: "connection refused", wantUnavl: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset()
			var sent *authnv1.TokenReview
			client.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
				sent = action.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
				if tt.apiErr != nil {
					return true, nil, tt.apiErr
				}
				return true, &authnv1.TokenReview{Status: tt.status}, nil
			})
			got, err := identity.NewTokenReviews(client, identity.TokenReviewConfig{TrustDomain: td, Audience: identity.Audience}).Validate(context.Background(), token)
			if sent == nil || sent.Spec.Token != string(token) || len(sent.Spec.Audiences) != 1 || sent.Spec.Audiences[0] != identity.Audience {
				t.Fatalf("TokenReview sent = %+v, want token and audience %s", sent, identity.Audience)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if errors.Is(err, identity.ErrTokenCheckUnavailable) != tt.wantUnavl {
					t.Errorf("errors.Is(err, ErrTokenCheckUnavailable) = %v, want %v", !tt.wantUnavl, tt.wantUnavl)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("got %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

// What the controller can tell without the API server never costs a
// TokenReview.
func TestTokenReviewsRefuseJunkWithoutAskingTheAPIServer(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	key := identitytest.NewKey(t)
	client, calls := countingAPI(func(string) (authnv1.TokenReviewStatus, error) {
		return authnv1.TokenReviewStatus{Error: "invalid bearer token"}, nil
	})
	reviews := identity.NewTokenReviews(client, identity.TokenReviewConfig{TrustDomain: td, Audience: identity.Audience, Issuers: []string{clusterIssuer}})
	past := jwt.NewNumericDate(time.Now().Add(-time.Minute))
	tests := []struct {
		name, token, want string
	}{
		{"not a JWT", "not-a-jwt", "service-account token: not a signed JWT"},
		{"three parts of junk", "aaaa.bbbb.cccc", "service-account token: not a signed JWT"},
		{"unsigned", strings.Join(strings.Split(string(saToken(t, key, nil)), ".")[:2], ".") + ".", "service-account token"},
		{"wrong audience", string(saToken(t, key, func(c *jwt.Claims) { c.Audience = jwt.Audience{"https://kubernetes.default.svc"} })),
			"token audience is [https://kubernetes.default.svc], want identity.skein.io"},
		{"another issuer", string(saToken(t, key, func(c *jwt.Claims) { c.Issuer = "https://evil.example" })),
			`service-account token issuer is "https://evil.example", not this cluster's`},
		{"expired", string(saToken(t, key, func(c *jwt.Claims) { c.Expiry = past })), "service-account token expired at"},
		{"no expiry", string(saToken(t, key, func(c *jwt.Claims) { c.Expiry = nil })), "service-account token has no expiry (exp)"},
		{"not yet valid", string(saToken(t, key, func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) })),
			"service-account token is not valid before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := reviews.Validate(context.Background(), []byte(tt.token))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d TokenReviews sent for junk, want 0", n)
	}
	// A well-formed token is reviewed: the fake API server was reachable.
	if _, err := reviews.Validate(context.Background(), saToken(t, key, nil)); err == nil || !strings.Contains(err.Error(), "invalid bearer token") {
		t.Errorf("well-formed token: %v, want the API server's refusal", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d TokenReviews for one well-formed token, want 1", n)
	}
}

// A verdict is reused until the token expires or the cache's TTL ends,
// whichever is first; an API server that did not answer is asked again.
func TestTokenReviewsCacheVerdicts(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	key := identitytest.NewKey(t)
	good, bad, unlucky := saToken(t, key, nil), saToken(t, key, func(c *jwt.Claims) { c.Subject = "bad" }), saToken(t, key, func(c *jwt.Claims) { c.Subject = "x" })
	apiDown := true
	client, calls := countingAPI(func(token string) (authnv1.TokenReviewStatus, error) {
		switch token {
		case string(good):
			return authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{identity.Audience},
				User: authnv1.UserInfo{Username: "system:serviceaccount:demo:web"}}, nil
		case string(unlucky):
			if apiDown {
				return authnv1.TokenReviewStatus{}, errors.New("connection refused")
			}
		}
		return authnv1.TokenReviewStatus{Error: "invalid bearer token"}, nil
	})
	now := time.Now()
	clock := func() time.Time { return now }
	reviews := identity.NewTokenReviews(client, identity.TokenReviewConfig{
		TrustDomain: td, Audience: identity.Audience, CacheTTL: 10 * time.Minute, Now: clock,
	})
	validate := func(token []byte) error {
		_, err := reviews.Validate(context.Background(), token)
		return err
	}
	for range 5 {
		if err := validate(good); err != nil {
			t.Fatalf("good token: %v", err)
		}
		if err := validate(bad); err == nil || !strings.Contains(err.Error(), "invalid bearer token") {
			t.Fatalf("bad token: %v", err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d TokenReviews for a good and a bad token sent 5 times each, want 2", n)
	}
	if err := validate(unlucky); !errors.Is(err, identity.ErrTokenCheckUnavailable) {
		t.Fatalf("token while the API is down: %v", err)
	}
	apiDown = false
	if err := validate(unlucky); err == nil || !strings.Contains(err.Error(), "invalid bearer token") {
		t.Fatalf("token once the API is back: %v, want a review", err)
	}
	if n := calls.Load(); n != 4 {
		t.Fatalf("%d TokenReviews, want 4: an unanswered review is not a verdict", n)
	}
	now = now.Add(11 * time.Minute) // past the cache TTL, before the tokens' expiry
	if err := validate(good); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 5 {
		t.Fatalf("%d TokenReviews, want 5: a verdict older than the cache TTL is asked again", n)
	}
	now = now.Add(time.Hour) // past the tokens' expiry
	if err := validate(good); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
	if n := calls.Load(); n != 5 {
		t.Fatalf("%d TokenReviews, want still 5: an expired token is refused locally", n)
	}
}

func TestAnyOfAcceptsJoinOrKubernetesTokens(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	joinKey := identitytest.NewKey(t)
	saKey := identitytest.NewKey(t)
	k8sToken, otherToken := saToken(t, saKey, nil), saToken(t, saKey, func(c *jwt.Claims) { c.Subject = "other" })
	client, _ := countingAPI(func(token string) (authnv1.TokenReviewStatus, error) {
		if token != string(k8sToken) {
			return authnv1.TokenReviewStatus{Error: "invalid bearer token"}, nil
		}
		return authnv1.TokenReviewStatus{
			Authenticated: true, Audiences: []string{identity.Audience},
			User: authnv1.UserInfo{Username: "system:serviceaccount:demo:api"},
		}, nil
	})
	tokens := identity.AnyOf(identity.NewJoinTokens(&joinKey.PublicKey, identity.Audience, nil),
		identity.NewTokenReviews(client, identity.TokenReviewConfig{TrustDomain: td, Audience: identity.Audience}))

	webID := spiffeid.RequireFromString("spiffe://cluster.local/ns/demo/sa/web")
	join, err := identity.MintJoinToken(joinKey, webID, identity.Audience, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := tokens.Validate(context.Background(), []byte(join)); err != nil || id != webID {
		t.Errorf("join token: %s, %v", id, err)
	}
	if id, err := tokens.Validate(context.Background(), k8sToken); err != nil || id.String() != "spiffe://cluster.local/ns/demo/sa/api" {
		t.Errorf("kubernetes token: %s, %v", id, err)
	}
	_, err = tokens.Validate(context.Background(), otherToken)
	if err == nil || !strings.Contains(err.Error(), "join token") || !strings.Contains(err.Error(), "invalid bearer token") {
		t.Errorf("bad token: %v, want both reasons", err)
	}
}
