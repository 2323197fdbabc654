package identity

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/internal/pki"
)

// JoinTokenIssuer is the "iss" claim of every join token.
const JoinTokenIssuer = "skein"

// JoinTokenKeyFile is the usual name of the join-token signing key beside
// the issuer material.
const JoinTokenKeyFile = "join-token.key"

// JoinTokenPublicKeyFile is the usual name of the join-token key's public
// half: all the controller needs to verify join tokens.
const JoinTokenPublicKeyFile = "join-token.pub"

// LoadJoinTokenVerifyKey reads the key that verifies join tokens: a PUBLIC
// KEY PEM (what the controller should be given) or, for setups that keep
// one file, the signing key itself, of which only the public half is kept.
func LoadJoinTokenVerifyKey(path string) (*ecdsa.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading join-token key: %w", err)
	}
	if pub, err := pki.ParsePublicKey(data); err == nil {
		return pub, nil
	}
	key, err := pki.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("join-token key %s: neither a PUBLIC KEY nor a private key: %w", path, err)
	}
	return &key.PublicKey, nil
}

// joinTokenLeeway absorbs small clock differences on exp and nbf.
const joinTokenLeeway = 30 * time.Second

// LoadJoinTokenKey reads the join-token signing key (ECDSA P-256 PEM).
func LoadJoinTokenKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading join-token key: %w", err)
	}
	key, err := pki.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("join-token key %s: %w", path, err)
	}
	return key, nil
}

// MintJoinToken signs a join token (an ES256 JWT) that proves id to the
// identity service for ttl from now.
func MintJoinToken(key *ecdsa.PrivateKey, id spiffeid.ID, audience string, ttl time.Duration) (string, error) {
	now := time.Now()
	return signJoinToken(key, jwt.Claims{
		Issuer:    JoinTokenIssuer,
		Subject:   id.String(),
		Audience:  jwt.Audience{audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(ttl)),
	})
}

func signJoinToken(key *ecdsa.PrivateKey, claims jwt.Claims) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("join token signer: %w", err)
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("signing join token for %s: %w", claims.Subject, err)
	}
	return token, nil
}

// JoinTokens validates join tokens signed with one key.
type JoinTokens struct {
	key      *ecdsa.PublicKey
	audience string
	now      func() time.Time
}

// NewJoinTokens validates tokens signed by key's private half for audience
// (normally Audience). A nil now means time.Now.
func NewJoinTokens(key *ecdsa.PublicKey, audience string, now func() time.Time) *JoinTokens {
	if now == nil {
		now = time.Now
	}
	return &JoinTokens{key: key, audience: audience, now: now}
}

// Validate checks signature (ES256 only), issuer, audience, validity period
// and subject, and returns the subject.
func (j *JoinTokens) Validate(_ context.Context, token []byte) (spiffeid.ID, error) {
	parsed, err := jwt.ParseSigned(string(token), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("join token: %w", err)
	}
	var claims jwt.Claims
	if err := parsed.Claims(j.key, &claims); err != nil {
		return spiffeid.ID{}, fmt.Errorf("join token signature: %w", err)
	}
	if err := j.checkClaims(claims); err != nil {
		return spiffeid.ID{}, err
	}
	id, err := spiffeid.FromString(claims.Subject)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("join token subject %q is not a SPIFFE ID: %w", claims.Subject, err)
	}
	return id, nil
}

func (j *JoinTokens) checkClaims(c jwt.Claims) error {
	now := j.now()
	switch {
	case c.Issuer != JoinTokenIssuer:
		return fmt.Errorf("token issuer is %q, want %q", c.Issuer, JoinTokenIssuer)
	case !c.Audience.Contains(j.audience):
		return fmt.Errorf("token audience is %v, want %s", []string(c.Audience), j.audience)
	case c.Expiry == nil:
		return errors.New("token has no expiry (exp)")
	case now.After(c.Expiry.Time().Add(joinTokenLeeway)):
		return fmt.Errorf("token expired at %s", c.Expiry.Time().UTC().Format(time.RFC3339))
	case c.NotBefore != nil && now.Add(joinTokenLeeway).Before(c.NotBefore.Time()):
		return fmt.Errorf("token is not valid before %s", c.NotBefore.Time().UTC().Format(time.RFC3339))
	}
	return nil
}
