package identity_test

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
	identitypb "github.com/skeinmesh/skein/proto/identity"
)

var webID = spiffeid.RequireFromString("spiffe://cluster.local/ns/demo/sa/web")

// A signed token is still refused when its life (exp - iat) is longer
// than the controller accepts, or when it hides its start.
func TestJoinTokenLifetimeIsCapped(t *testing.T) {
	key := identitytest.NewKey(t)
	now := time.Now()
	token := func(iat *jwt.NumericDate, exp time.Time) []byte {
		return signClaims(t, key, jwt.Claims{
			Issuer: identity.JoinTokenIssuer, Subject: webID.String(), Audience: jwt.Audience{identity.Audience},
			IssuedAt: iat, Expiry: jwt.NewNumericDate(exp),
		})
	}
	tests := []struct {
		name   string
		max    time.Duration // 0: the default
		token  []byte
		reason string // "" accepted
	}{
		{"a day", 0, token(jwt.NewNumericDate(now), now.Add(24*time.Hour)), ""},
		{"a day and an hour", 0, token(jwt.NewNumericDate(now), now.Add(25*time.Hour)),
			"token lifetime 25h0m0s is longer than the 24h0m0s this controller accepts"},
		{"a year", 0, token(jwt.NewNumericDate(now), now.Add(365*24*time.Hour)),
			"token lifetime 8760h0m0s is longer than the 24h0m0s this controller accepts"},
		{"two hours under a one-hour cap", time.Hour, token(jwt.NewNumericDate(now), now.Add(2*time.Hour)),
			"token lifetime 2h0m0s is longer than the 1h0m0s this controller accepts"},
		{"no iat", 0, token(nil, now.Add(time.Hour)), "token has no issue time (iat)"},
		{"iat in the future", 0, token(jwt.NewNumericDate(now.Add(300*24*time.Hour)), now.Add(300*24*time.Hour+time.Hour)),
			"token is issued in the future"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := identity.NewJoinTokens(&key.PublicKey, identity.Audience, nil)
			if tt.max != 0 {
				v = v.WithMaxLifetime(tt.max)
			}
			got, err := v.Validate(context.Background(), tt.token)
			switch {
			case tt.reason == "" && (err != nil || got != webID):
				t.Fatalf("got %s, %v; want %s", got, err, webID)
			case tt.reason != "" && (err == nil || !strings.Contains(err.Error(), tt.reason)):
				t.Fatalf("err = %v, want it to contain %q", err, tt.reason)
			}
		})
	}
}

// Every token gets its own ID.
func TestJoinTokensHaveIDs(t *testing.T) {
	key := identitytest.NewKey(t)
	seen := map[string]bool{}
	for range 3 {
		token, err := identity.MintJoinToken(key, webID, identity.Audience, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		var claims jwt.Claims
		if err := parsed.Claims(&key.PublicKey, &claims); err != nil {
			t.Fatal(err)
		}
		if raw, err := hex.DecodeString(claims.ID); err != nil || len(raw) != 16 || seen[claims.ID] {
			t.Fatalf("jti %q: want 16 random bytes in hex, new each time", claims.ID)
		}
		seen[claims.ID] = true
	}
}

// A one-shot token certifies once through the real service; the second
// use is refused. A reusable token is not.
func TestOneShotJoinTokenCertifiesOnce(t *testing.T) {
	ctrl := identitytest.Start(t, identitytest.Options{})
	id := ctrl.WorkloadID("demo", "web")
	oneShot, jti, err := identity.JoinToken{Identity: id, Audience: identity.Audience, TTL: time.Hour, OneShot: true}.Mint(ctrl.JoinKey)
	if err != nil {
		t.Fatal(err)
	}
	certify(t, ctrl, id, []byte(oneShot), newCSR(t, id))
	_, err = ctrl.Client.Certify(context.Background(), &identitypb.CertifyRequest{
		Identity: id.String(), Token: []byte(oneShot), CertificateSigningRequest: newCSR(t, id),
	})
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != "one-shot join token "+jti+" was already used" {
		t.Fatalf("second use: %v, want UNAUTHENTICATED saying it was used", err)
	}
	reusable := mintToken(t, ctrl, id)
	for range 2 {
		certify(t, ctrl, id, reusable, newCSR(t, id))
	}
}

// The used IDs are bounded: when the set is full of unexpired tokens, a new
// one-shot token is refused (not an old ID forgotten); once they expire,
// there is room again.
func TestUsedOneShotIDsAreBoundedAndExpire(t *testing.T) {
	key := identitytest.NewKey(t)
	now := time.Now()
	v := identity.NewJoinTokens(&key.PublicKey, identity.Audience, func() time.Time { return now })
	identity.SetMaxUsedJoinTokens(v, 2)
	mint := func() []byte {
		token, _, err := identity.JoinToken{Identity: webID, Audience: identity.Audience, TTL: time.Hour, OneShot: true}.Mint(key)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(token)
	}
	first := mint()
	for _, token := range [][]byte{first, mint()} {
		if _, err := v.Validate(context.Background(), token); err != nil {
			t.Fatal(err)
		}
	}
	third := mint()
	if _, err := v.Validate(context.Background(), third); err == nil ||
		err.Error() != "2 one-shot join tokens are in use, the most this controller remembers: try again when some expire" {
		t.Fatalf("third one-shot token while two are remembered: %v", err)
	}
	now = now.Add(2 * time.Hour) // the first two have expired; so has the third
	if _, err := v.Validate(context.Background(), first); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("first token after expiry: %v, want expired", err)
	}
	fresh, _, err := identity.JoinToken{Identity: webID, Audience: identity.Audience, TTL: 3 * time.Hour, OneShot: true}.Mint(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Validate(context.Background(), []byte(fresh)); err != nil {
		t.Fatalf("one-shot token once the remembered ones expired: %v", err)
	}
}
