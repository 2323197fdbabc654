package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
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

// DefaultJoinTokenMaxLifetime is the longest life (exp - iat) a join
// token may have to be accepted, unless configured otherwise: a join token
// is a bearer secret, so one that leaks is good for at most this long.
const DefaultJoinTokenMaxLifetime = 24 * time.Hour

// DefaultMaxUsedJoinTokens bounds the one-shot token IDs remembered as
// used, per controller replica, until each token expires.
const DefaultMaxUsedJoinTokens = 100000

// JoinToken says what a join token proves, to whom and for how long.
type JoinToken struct {
	Identity spiffeid.ID
	Audience string // normally Audience
	TTL      time.Duration
	// OneShot tokens are accepted once: the controller remembers their ID
	// (jti) until they expire and refuses them after. A proxy re-reads its
	// token at every renewal, so a one-shot token gives one certificate,
	// for workloads that live no longer than it.
	OneShot bool
}

// joinClaims are a join token's claims: the registered ones (with a
// random ID, jti, in every token) and whether it is one-shot.
type joinClaims struct {
	jwt.Claims
	OneShot bool `json:"skein.io/one-shot,omitempty"`
}

// Mint signs the token (an ES256 JWT) with key. It returns the token and
// its ID.
func (t JoinToken) Mint(key *ecdsa.PrivateKey) (token, id string, err error) {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", fmt.Errorf("join token ID: %w", err)
	}
	id = hex.EncodeToString(raw[:])
	now := time.Now()
	token, err = signJoinToken(key, joinClaims{
		Claims: jwt.Claims{
			ID:        id,
			Issuer:    JoinTokenIssuer,
			Subject:   t.Identity.String(),
			Audience:  jwt.Audience{t.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			Expiry:    jwt.NewNumericDate(now.Add(t.TTL)),
		},
		OneShot: t.OneShot,
	})
	return token, id, err
}

// MintJoinToken signs a reusable join token that proves id to the
// identity service for ttl from now.
func MintJoinToken(key *ecdsa.PrivateKey, id spiffeid.ID, audience string, ttl time.Duration) (string, error) {
	token, _, err := JoinToken{Identity: id, Audience: audience, TTL: ttl}.Mint(key)
	return token, err
}

func signJoinToken(key *ecdsa.PrivateKey, claims any) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("join token signer: %w", err)
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("signing join token: %w", err)
	}
	return token, nil
}

// JoinTokens validates join tokens signed with one key.
type JoinTokens struct {
	key         *ecdsa.PublicKey
	audience    string
	now         func() time.Time
	maxLifetime time.Duration
	used        *usedTokenIDs
}

// NewJoinTokens validates tokens signed by key's private half for audience
// (normally Audience), of at most DefaultJoinTokenMaxLifetime. A nil now
// means time.Now.
func NewJoinTokens(key *ecdsa.PublicKey, audience string, now func() time.Time) *JoinTokens {
	if now == nil {
		now = time.Now
	}
	return &JoinTokens{
		key: key, audience: audience, now: now,
		maxLifetime: DefaultJoinTokenMaxLifetime,
		used:        newUsedTokenIDs(DefaultMaxUsedJoinTokens, now),
	}
}

// WithMaxLifetime sets the longest life (exp - iat) of an accepted token.
func (j *JoinTokens) WithMaxLifetime(d time.Duration) *JoinTokens {
	j.maxLifetime = d
	return j
}

// Validate checks signature (ES256 only), issuer, audience, validity
// period, lifetime and subject, marks a one-shot token used, and returns
// the subject.
func (j *JoinTokens) Validate(_ context.Context, token []byte) (spiffeid.ID, error) {
	parsed, err := jwt.ParseSigned(string(token), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("join token: %w", err)
	}
	var claims joinClaims
	if err := parsed.Claims(j.key, &claims); err != nil {
		return spiffeid.ID{}, fmt.Errorf("join token signature: %w", err)
	}
	if err := j.checkClaims(claims.Claims); err != nil {
		return spiffeid.ID{}, err
	}
	id, err := spiffeid.FromString(claims.Subject)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("join token subject %q is not a SPIFFE ID: %w", claims.Subject, err)
	}
	if claims.OneShot {
		if claims.ID == "" {
			return spiffeid.ID{}, errors.New("one-shot join token has no ID (jti)")
		}
		if err := j.used.add(claims.ID, claims.Expiry.Time().Add(joinTokenLeeway)); err != nil {
			return spiffeid.ID{}, err
		}
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
	case c.IssuedAt == nil:
		return errors.New("token has no issue time (iat)")
	case now.After(c.Expiry.Time().Add(joinTokenLeeway)):
		return fmt.Errorf("token expired at %s", c.Expiry.Time().UTC().Format(time.RFC3339))
	case c.NotBefore != nil && now.Add(joinTokenLeeway).Before(c.NotBefore.Time()):
		return fmt.Errorf("token is not valid before %s", c.NotBefore.Time().UTC().Format(time.RFC3339))
	case now.Add(joinTokenLeeway).Before(c.IssuedAt.Time()):
		return fmt.Errorf("token is issued in the future (%s)", c.IssuedAt.Time().UTC().Format(time.RFC3339))
	case c.Expiry.Time().Sub(c.IssuedAt.Time()) > j.maxLifetime:
		return fmt.Errorf("token lifetime %s is longer than the %s this controller accepts",
			c.Expiry.Time().Sub(c.IssuedAt.Time()), j.maxLifetime)
	}
	return nil
}

// usedTokenIDs are the IDs of one-shot tokens already used, each kept
// until its token expires. It holds at most max; when that many unexpired
// tokens are held, further one-shot tokens are refused rather than an ID
// forgotten (which would let its token be used again).
type usedTokenIDs struct {
	max int
	now func() time.Time

	mu  sync.Mutex
	ids map[string]time.Time // jti -> when its token expires
}

func newUsedTokenIDs(max int, now func() time.Time) *usedTokenIDs {
	return &usedTokenIDs{max: max, now: now, ids: map[string]time.Time{}}
}

// add records id as used until expires, or says why it cannot be used.
func (u *usedTokenIDs) add(id string, expires time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	if until, ok := u.ids[id]; ok && now.Before(until) {
		return fmt.Errorf("one-shot join token %s was already used", id)
	}
	if len(u.ids) >= u.max {
		for k, until := range u.ids {
			if !now.Before(until) {
				delete(u.ids, k)
			}
		}
	}
	if len(u.ids) >= u.max {
		return fmt.Errorf("%d one-shot join tokens are in use, the most this controller remembers: try again when some expire", u.max)
	}
	u.ids[id] = expires
	return nil
}
