// Package proxyerror is the layer that turns a request the proxy could not
// forward into an answer: 404, 502, 503 or 504 for HTTP, a trailers-only
// status (UNAVAILABLE, DEADLINE_EXCEEDED, UNIMPLEMENTED) for gRPC, with the reason told only to clients allowed to
// know it. It sits outermost in each direction's stack (metrics aside), so
// the engines never see an error on the normal path.
package proxyerror

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// Header carries the reason of an error the proxy itself answered, to
// those allowed to see it (see MayKnowWhy).
const Header = "skein-proxy-error"

// Layer answers the errors of the layers below it. Why a request failed
// (a dial error names addresses and ports) goes to the log always, and to
// the client only when MayKnowWhy says so. A request whose client went
// away is not answered: the error is returned for the engine, which has
// nobody to write to.
func Layer(log *slog.Logger) stack.Layer {
	return func(next stack.Handler) stack.Handler {
		return stack.HandlerFunc(func(ctx context.Context, req *stack.Request) (*stack.Response, error) {
			resp, err := next.Serve(ctx, req)
			if err == nil {
				return resp, nil
			}
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				log.Debug("request cancelled", "direction", req.Conn.Direction, "authority", req.Authority, "path", req.Path)
				return nil, err
			}
			log.Info("request failed", "direction", req.Conn.Direction, "client", req.Conn.Client,
				"authority", req.Authority, "path", req.Path, "err", err)
			return Answer(req, err), nil
		})
	}
}

// Status is the HTTP status the proxy answers err with.
func Status(err error) int {
	switch {
	case errors.Is(err, stack.ErrNoEndpoints), errors.Is(err, stack.ErrAllEjected), errors.Is(err, stack.ErrRefusedWithoutMTLS):
		return http.StatusServiceUnavailable
	case errors.Is(err, stack.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, stack.ErrNoRoute):
		return http.StatusNotFound
	}
	return http.StatusBadGateway
}

// GRPCStatus is the gRPC status code the proxy answers err with, as a
// grpc-status value.
func GRPCStatus(err error) string {
	switch {
	case errors.Is(err, stack.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "4" // DEADLINE_EXCEEDED
	case errors.Is(err, stack.ErrNoRoute):
		return "12" // UNIMPLEMENTED
	}
	return "14" // UNAVAILABLE
}

// Answer is the response to req when forwarding it failed with err: for
// gRPC a trailers-only response with GRPCStatus, for anything else Status
// with its text as body.
func Answer(req *stack.Request, err error) *stack.Response {
	status := Status(err)
	text := http.StatusText(status)
	message := text
	var h stack.Header
	if MayKnowWhy(req.Conn) {
		message = err.Error()
		h.Add(Header, message)
	}
	if req.IsGRPC() {
		h.Add("content-type", "application/grpc")
		h.Add("grpc-status", GRPCStatus(err))
		h.Add("grpc-message", message)
		return &stack.Response{Status: http.StatusOK, Header: h, Body: stack.NoBody}
	}
	// As http.Error writes it.
	h.Add("content-type", "text/plain; charset=utf-8")
	h.Add("x-content-type-options", "nosniff")
	return &stack.Response{Status: status, Header: h, Body: stack.BytesBody([]byte(text+"\n"), nil)}
}

// MayKnowWhy says whether the client of a request may read why the proxy
// failed it: the local application (outbound: the workload itself) and
// meshed peers (inbound over mutual TLS) may; a client outside the mesh
// gets the bare status, since the reason names the workload's addresses,
// ports and internals.
func MayKnowWhy(ci *stack.ConnInfo) bool {
	return ci.Direction == "outbound" || ci.ClientID != ""
}
