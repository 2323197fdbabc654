package identity_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skeinmesh/skein/internal/controller/identity"
	"github.com/skeinmesh/skein/internal/controller/identity/identitytest"
)

func TestTokenReviews(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
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
			got, err := identity.NewTokenReviews(client, td, identity.Audience).Validate(context.Background(), []byte("the-token"))
			if sent == nil || sent.Spec.Token != "the-token" || len(sent.Spec.Audiences) != 1 || sent.Spec.Audiences[0] != identity.Audience {
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

func TestAnyOfAcceptsJoinOrKubernetesTokens(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	joinKey := identitytest.NewKey(t)
	client := fake.NewClientset()
	client.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		review := action.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		if review.Spec.Token != "k8s-token" {
			return true, &authnv1.TokenReview{Status: authnv1.TokenReviewStatus{Error: "invalid bearer token"}}, nil
		}
		return true, &authnv1.TokenReview{Status: authnv1.TokenReviewStatus{
			Authenticated: true, Audiences: []string{identity.Audience},
			User: authnv1.UserInfo{Username: "system:serviceaccount:demo:api"},
		}}, nil
	})
	tokens := identity.AnyOf(identity.NewJoinTokens(&joinKey.PublicKey, identity.Audience, nil), identity.NewTokenReviews(client, td, identity.Audience))

	webID := spiffeid.RequireFromString("spiffe://cluster.local/ns/demo/sa/web")
	join, err := identity.MintJoinToken(joinKey, webID, identity.Audience, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := tokens.Validate(context.Background(), []byte(join)); err != nil || id != webID {
		t.Errorf("join token: %s, %v", id, err)
	}
	if id, err := tokens.Validate(context.Background(), []byte("k8s-token")); err != nil || id.String() != "spiffe://cluster.local/ns/demo/sa/api" {
		t.Errorf("kubernetes token: %s, %v", id, err)
	}
	_, err = tokens.Validate(context.Background(), []byte("neither"))
	if err == nil || !strings.Contains(err.Error(), "join token") || !strings.Contains(err.Error(), "invalid bearer token") {
		t.Errorf("bad token: %v, want both reasons", err)
	}
}
