package identity

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

const serviceAccountUserPrefix = "system:serviceaccount:"

// TokenReviews validates Kubernetes projected service-account tokens by
// asking the API server (a TokenReview), and maps the service account to
// its identity in the trust domain.
type TokenReviews struct {
	client      kubernetes.Interface
	trustDomain spiffeid.TrustDomain
	audience    string
}

// NewTokenReviews validates tokens bound to audience (normally Audience)
// for service accounts of trustDomain's cluster.
func NewTokenReviews(client kubernetes.Interface, trustDomain spiffeid.TrustDomain, audience string) *TokenReviews {
	return &TokenReviews{client: client, trustDomain: trustDomain, audience: audience}
}

// Validate sends a TokenReview and returns the identity of the service
// account the token belongs to.
func (r *TokenReviews) Validate(ctx context.Context, token []byte) (spiffeid.ID, error) {
	review, err := r.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: string(token), Audiences: []string{r.audience}},
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
	if !slices.Contains(status.Audiences, r.audience) {
		return spiffeid.ID{}, fmt.Errorf("token audience is %v, want %s", status.Audiences, r.audience)
	}
	namespace, serviceAccount, ok := strings.Cut(strings.TrimPrefix(status.User.Username, serviceAccountUserPrefix), ":")
	if !strings.HasPrefix(status.User.Username, serviceAccountUserPrefix) || !ok {
		return spiffeid.ID{}, fmt.Errorf("token is for user %q, not a service account", status.User.Username)
	}
	return WorkloadID(r.trustDomain, namespace, serviceAccount)
}
