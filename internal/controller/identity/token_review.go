package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/client-go/kubernetes"
)

const serviceAccountUserPrefix = "system:serviceaccount:"

// Defaults of the TokenReview cache.
const (
	// DefaultReviewCacheSize bounds how many reviewed tokens are
	// remembered; the least recently used go first.
	DefaultReviewCacheSize = 10000
	// DefaultReviewCacheTTL is the longest a review's verdict is reused,
	// whatever the token's own expiry: a token of a deleted pod, which the
	// API server stops accepting at once, is still accepted here for up
	// to this long.
	DefaultReviewCacheTTL = 10 * time.Minute
)

// serviceAccountTokenAlgorithms are the JWS algorithms the API server may
// sign service-account tokens with.
var serviceAccountTokenAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA,
}

// TokenReviewConfig says which tokens to review and how to remember the
// answers.
type TokenReviewConfig struct {
	TrustDomain spiffeid.TrustDomain
	// Audience every token must be bound to (normally Audience).
	Audience string
	// Issuers are the "iss" values the API server signs service-account
	// tokens with (its --service-account-issuer); a token naming another is
	// refused without a review. Empty skips that local check.
	Issuers []string
	// CacheSize and CacheTTL bound the cache of review verdicts; zero
	// means DefaultReviewCacheSize and DefaultReviewCacheTTL.
	CacheSize int
	CacheTTL  time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// TokenReviews validates Kubernetes projected service-account tokens by
// asking the API server (a TokenReview), and maps the service account to
// its identity in the trust domain. What can be checked without the API
// server is checked first (a JWT, not expired, the audience, the issuer),
// and verdicts are cached by the token's hash until the token expires (at
// most CacheTTL), so neither junk nor a repeated token costs a review.
type TokenReviews struct {
	client  kubernetes.Interface
	cfg     TokenReviewConfig
	reviews *cache.LRUExpireCache // sha256 of the token -> reviewVerdict
}

type reviewVerdict struct {
	id  spiffeid.ID
	err error
}

// NewTokenReviews validates tokens through client's TokenReview API.
func NewTokenReviews(client kubernetes.Interface, cfg TokenReviewConfig) *TokenReviews {
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultReviewCacheSize
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultReviewCacheTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &TokenReviews{client: client, cfg: cfg, reviews: cache.NewLRUExpireCacheWithClock(cfg.CacheSize, clockFunc(cfg.Now))}
}

// clockFunc is a func as the cache's clock.
type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }

// Validate checks the token locally, then answers from the cache or sends
// a TokenReview, and returns the identity of the service account the token
// belongs to.
func (r *TokenReviews) Validate(ctx context.Context, token []byte) (spiffeid.ID, error) {
	expiry, err := r.precheck(token)
	if err != nil {
		return spiffeid.ID{}, err
	}
	key := sha256.Sum256(token)
	if v, ok := r.reviews.Get(key); ok {
		verdict := v.(reviewVerdict)
		return verdict.id, verdict.err
	}
	id, err := r.review(ctx, token)
	if errors.Is(err, ErrTokenCheckUnavailable) {
		return id, err // not a verdict on the token: ask again next time
	}
	if ttl := min(expiry.Sub(r.cfg.Now()), r.cfg.CacheTTL); ttl > 0 {
		r.reviews.Add(key, reviewVerdict{id: id, err: err}, ttl)
	}
	return id, err
}

// precheck refuses, without asking the API server, a token that cannot be
// a service-account token for this audience, and returns its expiry.
func (r *TokenReviews) precheck(token []byte) (time.Time, error) {
	if i := bytes.LastIndexByte(token, '.'); i < 0 || i == len(token)-1 {
		return time.Time{}, errors.New("service-account token: not a signed JWT (no signature)")
	}
	parsed, err := jwt.ParseSigned(string(token), serviceAccountTokenAlgorithms)
	if err != nil {
		return time.Time{}, fmt.Errorf("service-account token: not a signed JWT: %w", err)
	}
	var claims jwt.Claims
	if err := parsed.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return time.Time{}, fmt.Errorf("service-account token claims: %w", err)
	}
	now := r.cfg.Now()
	switch {
	case claims.Expiry == nil:
		return time.Time{}, errors.New("service-account token has no expiry (exp)")
	case !now.Before(claims.Expiry.Time()):
		return time.Time{}, fmt.Errorf("service-account token expired at %s", claims.Expiry.Time().UTC().Format(time.RFC3339))
	case claims.NotBefore != nil && now.Add(joinTokenLeeway).Before(claims.NotBefore.Time()):
		return time.Time{}, fmt.Errorf("service-account token is not valid before %s", claims.NotBefore.Time().UTC().Format(time.RFC3339))
	case !claims.Audience.Contains(r.cfg.Audience):
		return time.Time{}, fmt.Errorf("token audience is %v, want %s", []string(claims.Audience), r.cfg.Audience)
	case len(r.cfg.Issuers) > 0 && !slices.Contains(r.cfg.Issuers, claims.Issuer):
		return time.Time{}, fmt.Errorf("service-account token issuer is %q, not this cluster's", claims.Issuer)
	}
	return claims.Expiry.Time(), nil
}

// review sends the TokenReview.
func (r *TokenReviews) review(ctx context.Context, token []byte) (spiffeid.ID, error) {
	review, err := r.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: string(token), Audiences: []string{r.cfg.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: token review: %v", ErrTokenCheckUnavailable, err)
	}
	status := review.Status
	if !status.Authenticated {
		reason := status.Error
		if reason == "" {
			reason = "no reason given"
		}
		return spiffeid.ID{}, fmt.Errorf("token not authenticated by the Kubernetes API: %s", reason)
	}
	if !slices.Contains(status.Audiences, r.cfg.Audience) {
		return spiffeid.ID{}, fmt.Errorf("token audience is %v, want %s", status.Audiences, r.cfg.Audience)
	}
	namespace, serviceAccount, ok := strings.Cut(strings.TrimPrefix(status.User.Username, serviceAccountUserPrefix), ":")
	if !strings.HasPrefix(status.User.Username, serviceAccountUserPrefix) || !ok {
		return spiffeid.ID{}, fmt.Errorf("token is for user %q, not a service account", status.User.Username)
	}
	return WorkloadID(r.cfg.TrustDomain, namespace, serviceAccount)
}

// IssuerOf reads the "iss" claim of a JWT without verifying it: for the
// controller's own service-account token, to learn the cluster's issuer.
func IssuerOf(token []byte) (string, error) {
	parsed, err := jwt.ParseSigned(strings.TrimSpace(string(token)), serviceAccountTokenAlgorithms)
	if err != nil {
		return "", fmt.Errorf("not a signed JWT: %w", err)
	}
	var claims jwt.Claims
	if err := parsed.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return "", err
	}
	if claims.Issuer == "" {
		return "", errors.New("token has no issuer (iss)")
	}
	return claims.Issuer, nil
}
