package metrics

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/skeinmesh/skein/internal/proxy/discovery"
	"github.com/skeinmesh/skein/internal/proxy/stack"
)

// Layer is the metrics layer of one direction: it counts every request and
// its response (request_total, response_total, response_latency_ms) under
// the labels of where the request went, which the layers below fill in
// (stack.RequestInfo). The latency runs from the request's arrival to its
// response's headers (or its failure). A gRPC response's status is read
// from its headers (trailers-only) or, at the end of its body, from its
// trailers: such a response is recorded when its body ends.
//
// Put it outside the errors layer, so that the answers the proxy makes
// itself are counted as what the client saw.
func Layer(reg *Registry, direction string) stack.Layer {
	return func(next stack.Handler) stack.Handler {
		return &recorder{next: next, reg: reg, direction: direction}
	}
}

type recorder struct {
	next      stack.Handler
	reg       *Registry
	direction string
}

func (r *recorder) Serve(ctx context.Context, req *stack.Request) (*stack.Response, error) {
	start := time.Now()
	resp, err := r.next.Serve(ctx, req)
	latency := time.Since(start)
	rr := r.reg.Request(requestLabels(req, r.direction))
	if err != nil {
		rr.Response(0, "", latency)
		return nil, err
	}
	if grpc := resp.Header.Get("grpc-status"); grpc != "" || !stack.IsGRPC(resp.Header.Get("content-type")) {
		rr.Response(resp.Status, grpc, latency)
		return resp, nil
	}
	resp.Body = &grpcStatusBody{Body: resp.Body, rr: rr, status: resp.Status, latency: latency}
	return resp, nil
}

// requestLabels are the labels of req once the layers below have said
// where it went.
func requestLabels(req *stack.Request, direction string) HTTPLabels {
	ci, ri := req.Conn, &req.Info
	l := HTTPLabels{
		Direction:  direction,
		Authority:  authorityLabel(ri),
		TargetAddr: targetAddr(ci, ri),
		TLS:        tlsLabel(ci, ri, direction),
		ClientID:   ci.ClientID,
		ServerID:   ri.ServerID,
		RouteName:  ri.Route,
		Dst:        DstFromEndpointLabels(ri.Endpoint.Labels),
	}
	if ri.Service != "" && l.Dst.Service == "" {
		l.Dst.Service = ri.Service
	}
	return l
}

// authorityLabel is the destination discovery resolved the request to, in
// the form discovery matches names (lower case, no trailing dot), or
// Unknown. Never the Host / :authority as the client sent it: a client
// invents those at will, and each new value would be series the proxy
// keeps for its whole life. Inbound requests are not resolved, so their
// authority is always Unknown.
func authorityLabel(ri *stack.RequestInfo) string {
	if ri.Service == "" {
		return Unknown
	}
	return discovery.CanonicalName(ri.Service)
}

func targetAddr(ci *stack.ConnInfo, ri *stack.RequestInfo) string {
	if ri.Endpoint.Addr.IsValid() {
		return ri.Endpoint.Addr.String()
	}
	if ci.Target != "" {
		return ci.Target
	}
	return ci.OrigDstString()
}

func tlsLabel(ci *stack.ConnInfo, ri *stack.RequestInfo, direction string) string {
	if direction == DirectionInbound && ci.ClientID != "" {
		return TLSTrue
	}
	if direction == DirectionOutbound && ri.ServerID != "" {
		return TLSTrue
	}
	return TLSNoIdentity
}

// grpcStatusBody records a gRPC response once its body ends, with the
// grpc-status of its trailers (none when the body was cut short).
type grpcStatusBody struct {
	stack.Body
	rr      *RequestRecorder
	status  int
	latency time.Duration
	once    sync.Once
}

func (b *grpcStatusBody) Read(p []byte) (int, error) {
	n, err := b.Body.Read(p)
	if err == io.EOF {
		b.ended(b.Body.Trailers(), nil)
	} else if err != nil {
		b.ended(nil, err)
	}
	return n, err
}

// Unwrap implements stack.Unwrapper: the body is only watched for its end.
func (b *grpcStatusBody) Unwrap() stack.Body { return b.Body }

// ended records the response with the trailers' grpc-status, or none when
// the body was cut short.
func (b *grpcStatusBody) ended(trailers stack.Header, err error) {
	if err != nil {
		trailers = nil
	}
	b.record(trailers.Get("grpc-status"))
}

func (b *grpcStatusBody) Close() error {
	b.record("")
	return b.Body.Close()
}

func (b *grpcStatusBody) record(grpc string) {
	b.once.Do(func() { b.rr.Response(b.status, grpc, b.latency) })
}
