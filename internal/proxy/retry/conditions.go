package retry

import (
	"context"
	"errors"
	"strconv"

	"github.com/skeinmesh/skein/internal/proxy/stack"
	"github.com/skeinmesh/skein/internal/routes"
)

// DefaultLimit is the most retries of a request when the rule sets none
// (skein.io/retry-limit).
const DefaultLimit = 2

// idempotent methods (RFC 9110 §9.2.2) are retried by default; others only
// when the rule says NonIdempotent (istio#50506: a replayed POST paid out
// twice).
func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// mayRetry says whether req may be sent more than once under r: never an
// upgrade or a CONNECT (a tunnel); an idempotent method, a gRPC call when
// gRPC codes are configured, or any method when the rule allows
// non-idempotent retries.
func mayRetry(req *stack.Request, r *routes.Retry) bool {
	if r == nil || req.Method == "CONNECT" || req.IsUpgrade() {
		return false
	}
	if len(r.HTTP) == 0 && len(r.GRPC) == 0 && !r.GatewayError && !r.Reset {
		return false // nothing to retry on: retries are off
	}
	return r.NonIdempotent || idempotent(req.Method) || (len(r.GRPC) > 0 && req.IsGRPC())
}

// retryableStatus says whether an HTTP status is one of r's conditions.
func retryableStatus(r *routes.Retry, status int) bool {
	if r.GatewayError && (status == 502 || status == 503 || status == 504) {
		return true
	}
	for _, sr := range r.HTTP {
		if status >= sr.Min && status <= sr.Max {
			return true
		}
	}
	return false
}

// retryableGRPC says whether a grpc-status value is one of r's codes.
func retryableGRPC(r *routes.Retry, grpcStatus string) bool {
	if grpcStatus == "" {
		return false
	}
	code, err := strconv.Atoi(grpcStatus)
	if err != nil {
		return false
	}
	for _, c := range r.GRPC {
		if c == code {
			return true
		}
	}
	return false
}

// retryableError says whether an attempt that failed with err before any
// response may be retried under r: on "reset" (a connection refused,
// reset or lost, or a request never sent), or when its per-try timeout
// ended it. The request's own end (ctx) and the proxy's refusals (no
// endpoints, no mTLS) are not retried: another attempt would meet them
// again.
func retryableError(ctx context.Context, r *routes.Retry, err error, perTryExpired bool) bool {
	switch {
	case ctx.Err() != nil:
		return false
	case perTryExpired:
		return true
	case errors.Is(err, stack.ErrNoEndpoints), errors.Is(err, stack.ErrRefusedWithoutMTLS):
		return false
	}
	return r.Reset
}

// limit is r's retry limit, DefaultLimit when unset.
func limit(r *routes.Retry) int {
	if r.Limit > 0 {
		return r.Limit
	}
	return DefaultLimit
}
