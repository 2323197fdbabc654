package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Audience is the audience every identity token must be bound to: a
// projected service-account token asked for with this audience, or a join
// token minted for it.
const Audience = "identity.skein.io"

// TokenValidator checks a token and says which workload identity it proves.
// Errors say why the token is refused, in words a person can act on.
type TokenValidator interface {
	Validate(ctx context.Context, token []byte) (spiffeid.ID, error)
}

// ErrTokenCheckUnavailable marks a failure to check a token at all (the
// Kubernetes API did not answer), as opposed to a token found bad.
var ErrTokenCheckUnavailable = errors.New("token check unavailable")

// WorkloadID builds spiffe://<td>/ns/<namespace>/sa/<serviceAccount>.
func WorkloadID(td spiffeid.TrustDomain, namespace, serviceAccount string) (spiffeid.ID, error) {
	id, err := spiffeid.FromSegments(td, "ns", namespace, "sa", serviceAccount)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("identity for namespace %q service account %q: %w", namespace, serviceAccount, err)
	}
	return id, nil
}

// ParseWorkloadID parses s as a SPIFFE ID in td with the path
// /ns/<namespace>/sa/<service-account>.
func ParseWorkloadID(td spiffeid.TrustDomain, s string) (spiffeid.ID, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("identity %q is not a SPIFFE ID: %w", s, err)
	}
	if id.TrustDomain() != td {
		return spiffeid.ID{}, fmt.Errorf("identity %s is not in trust domain %s", id, td)
	}
	segments := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(segments) != 4 || segments[0] != "ns" || segments[2] != "sa" {
		return spiffeid.ID{}, fmt.Errorf("identity %s: path must be /ns/<namespace>/sa/<service-account>", id)
	}
	return id, nil
}

// AnyOf accepts a token that any of validators accepts, tried in order
// (join tokens first is cheapest: no API call). If all refuse it, the error
// gives every reason.
func AnyOf(validators ...TokenValidator) TokenValidator {
	return anyOf(validators)
}

type anyOf []TokenValidator

func (a anyOf) Validate(ctx context.Context, token []byte) (spiffeid.ID, error) {
	if len(a) == 0 {
		return spiffeid.ID{}, errors.New("no token validators configured")
	}
	var errs []error
	for _, v := range a {
		id, err := v.Validate(ctx, token)
		if err == nil {
			return id, nil
		}
		errs = append(errs, err)
	}
	return spiffeid.ID{}, errors.Join(errs...)
}
