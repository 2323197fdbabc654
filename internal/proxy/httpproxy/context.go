package httpproxy

import (
	"context"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// ConnInfo is stack.ConnInfo, while this package remains.
type ConnInfo = stack.ConnInfo

type connInfoKey struct{}

// WithConnInfo returns ctx carrying ci.
func WithConnInfo(ctx context.Context, ci *ConnInfo) context.Context {
	return context.WithValue(ctx, connInfoKey{}, ci)
}

// ConnInfoFrom returns the ConnInfo in ctx, or an empty one.
func ConnInfoFrom(ctx context.Context) *ConnInfo {
	if ci, ok := ctx.Value(connInfoKey{}).(*ConnInfo); ok {
		return ci
	}
	return &ConnInfo{}
}

// RequestInfo is stack.RequestInfo, while this package remains.
type RequestInfo = stack.RequestInfo

type requestInfoKey struct{}

// WithRequestInfo returns ctx carrying ri for the Upstream to fill in.
func WithRequestInfo(ctx context.Context, ri *RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, ri)
}

// RequestInfoFrom returns the request's RequestInfo for the Upstream to fill
// in, or nil outside a request that passed through this package.
func RequestInfoFrom(ctx context.Context) *RequestInfo {
	ri, _ := ctx.Value(requestInfoKey{}).(*RequestInfo)
	return ri
}
